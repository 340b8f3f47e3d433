"""XMLAdapter's reading of replies: the fast path for replies of plain elements reads exactly
what the XML parser reads, and refuses what the parser refuses."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from hypothesis import given, settings
from hypothesis import strategies as st

from dspex.backends.native._xml import _children, reply_elements

_PIECES = [
    "<a>", "</a>", "<b>", "</b>", "<item>", "</item>", "<xml>", "</xml>", "<XmlA>", "</XmlA>",
    "<entry>", "</entry>", '<entry key="k">', "<a/>", "<é>", "</é>", "<a >", "</a >",
    "text", " ", "\n", "\t", "\r", "\r\n", ">", "]]>", "]]", "&", "&amp;", "&lt;", "&#65;",
    "\x00", "\x01", "\x0b", "\x1f", "\x7f", "\x85", "\u2028", "\ud800", "\ufffe", "\uffff",
    "日本", "🚀", "<!-- c -->", "<?pi x?>", "<![CDATA[x]]>", "\"", "'", "=",
]  # fmt: skip
_REPLIES = st.one_of(
    st.text(max_size=40), st.lists(st.sampled_from(_PIECES), max_size=20).map("".join)
)


def _as_parsed(completion: str) -> object:
    """The elements as XMLAdapter groups them through the parser, or the parse error."""
    try:
        elements = _children(ET.fromstring(f"<dspy_root>{completion}</dspy_root>"))
    except ET.ParseError:
        return "ParseError"
    except Exception as exc:  # (a lone surrogate does not encode)
        return type(exc).__name__
    return _shape(elements)


def _shape(elements: dict[str, list[ET.Element]]) -> object:
    return {
        name: [(e.tag, e.text, dict(e.attrib), len(e)) for e in group]
        for name, group in elements.items()
    }


@settings(max_examples=600, deadline=None)
@given(_REPLIES)
def test_replies_read_as_the_xml_parser_reads_them(completion: str) -> None:
    try:
        got: object = _shape(reply_elements(completion))
    except ET.ParseError:
        got = "ParseError"
    except Exception as exc:
        got = type(exc).__name__
    assert got == _as_parsed(completion)


def test_plain_replies_take_the_fast_path_and_others_the_parser() -> None:
    plain = "Sure.\n<answer>\nParis\n</answer>\n<n>3</n> done"
    assert _shape(reply_elements(plain)) == {
        "answer": [("answer", "\nParis\n", {}, 0)],
        "n": [("n", "3", {}, 0)],
    }
    assert _shape(reply_elements("<a></a>")) == {"a": [("a", None, {}, 0)]}
    # markup the fast path leaves to the parser: still read, or refused, as the parser does
    nested = reply_elements("<a><item>1</item></a>")
    assert [len(e) for e in nested["a"]] == [1]
    for bad in ("<a>x & y</a>", "<a>x</b>", "<a>]]></a>", "<a>\x00</a>"):
        assert _as_parsed(bad) == "ParseError"
        try:
            reply_elements(bad)
        except ET.ParseError:
            continue
        raise AssertionError(f"{bad!r} should not read")
