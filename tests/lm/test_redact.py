"""redact(): the one place API keys are masked in text, and the 8-character rule."""

from __future__ import annotations

from dspex.lm._config import MIN_SECRET_LENGTH, redact


def test_a_real_key_is_masked_wherever_it_occurs() -> None:
    key = "sk-12345"  # 8 characters: a real key
    assert len(key) == MIN_SECRET_LENGTH
    value = {"a": f"Bearer {key}", "b": [key, (f"{key}{key}", 3)], "c": None}
    assert redact(value, key) == {"a": "Bearer ***", "b": ["***", ["******", 3]], "c": None}


def test_a_shorter_key_is_a_placeholder_and_masks_nothing() -> None:
    text = "the latest request from localhost, key k (sk-x)"
    for key in ("sk-1234", "test", "local", "sk-x", "k", "", None):
        assert redact(text, key) == text
        assert redact({"q": [text]}, key) == {"q": [text]}
