"""Prompt templates of the video MLLM: where the video's tokens go among the words."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from videoadapt.errors import VideoadaptError

VIDEO = "<video>"
PROMPT = "{prompt}"


def check_text(what: str, value: Any) -> None:
    """Refuse a ``what`` that is not a text. A YAML value with a colon followed by a space or the end (a template
    ending in ``Answer:``) reads as a mapping unless it is quoted, and a mapping would otherwise fail deep inside
    with an ``AttributeError``, or, turned into a string, silently become a template of its braces."""
    if not isinstance(value, str):
        raise VideoadaptError(
            f"the {what} must be a text, got {type(value).__name__} {value!r}; in YAML or a KEY=VALUE override, quote "
            "a value that holds ': ' or ends with ':' (e.g. 'model.mllm.template=\"<video> {prompt}\\nAnswer:\"')"
        )


@dataclass(frozen=True)
class PromptTemplate:
    """``text`` holds the placeholder ``<video>`` exactly once (where the visual tokens go) and, optionally,
    ``{prompt}`` (where the question or instruction goes; without it the prompt follows the text on a new line).
    With ``chat`` the result is wrapped as the user's turn by the tokenizer's chat template (with ``system`` as the
    system turn; None keeps the template's default), ending where the assistant's answer starts."""

    text: str = f"{VIDEO}\n{PROMPT}"
    chat: bool = True
    system: str | None = None

    def __post_init__(self) -> None:
        check_text("prompt template", self.text)
        count = self.text.count(VIDEO)
        if count != 1:
            raise VideoadaptError(
                f"prompt template {self.text!r} must hold the video placeholder {VIDEO} exactly once (found {count})"
            )

    def render(self, prompt: str, tokenizer: Any) -> tuple[str, str]:
        """The text before and after the video's tokens for one ``prompt``."""
        if VIDEO in prompt:
            raise VideoadaptError(f"the prompt {prompt!r} itself contains the video placeholder {VIDEO}")
        if PROMPT in self.text:
            user = self.text.replace(PROMPT, prompt)
        else:
            user = f"{self.text}\n{prompt}" if prompt else self.text
        if self.chat:
            if getattr(tokenizer, "chat_template", None) is None:
                raise VideoadaptError("prompt template asks for the chat format but the tokenizer has no chat template")
            messages = ([] if self.system is None else [{"role": "system", "content": self.system}]) + [
                {"role": "user", "content": user}
            ]
            user = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        before, after = user.split(VIDEO)
        return before, after
