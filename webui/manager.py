"""The board's component registry and its labels.

Every control is registered under `"tab.elem"` (`"top.model_name"`, `"train.lora_rank"`); `elem` is the argument
the control sets. Labels, help texts and choice names come from `locales/<lang>.yaml`, keyed the same way, plus
`"alerts.*"` message templates. The registry is what lets one handler relabel the whole page when the language
changes, and what the locale test checks for completeness.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from functools import cache
from typing import Any

import yaml

from core.paths import LOCALES_DIR

# The C loader when libyaml is there: the same safe constructor set, a third of the start-up cost.
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

logger = logging.getLogger(__name__)

LANGUAGES: dict[str, str] = {"en": "English", "zh": "简体中文", "ru": "Русский", "ko": "한국어", "ja": "日本語"}
DEFAULT_LANG = "en"


@cache
def load_locale(lang: str) -> dict[str, Any]:
    """The flat `key -> entry` mapping of `locales/<lang>.yaml` (cached; the files ship with the package)."""
    path = LOCALES_DIR / f"{lang}.yaml"
    with open(path, encoding="utf-8") as f:
        data = yaml.load(f, Loader=SAFE_LOADER) or {}  # safe: SafeLoader's C twin (3x faster at start-up)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of 'tab.elem' keys, got {type(data).__name__}")
    return data


def normalize_lang(lang: str | None) -> str:
    """A supported language code; anything else falls back to English."""
    return lang if lang in LANGUAGES else DEFAULT_LANG


def alert(lang: str | None, key: str, **values: Any) -> str:
    """The message `alerts.<key>` in `lang`, formatted with `values` (English when a translation is missing)."""
    full = f"alerts.{key}"
    text = load_locale(normalize_lang(lang)).get(full) or load_locale(DEFAULT_LANG).get(full)
    if text is None:
        logger.error("missing locale message %s", full)
        return key
    try:
        return str(text).format(**values)
    except (KeyError, IndexError, ValueError):
        logger.error("locale message %s (%s) does not fit values %s", full, lang, sorted(values))
        return str(text)


def entry(lang: str | None, key: str) -> dict[str, Any]:
    """The locale entry of a component (`label`, `info`, `choices`, `placeholder`), English as the fallback."""
    found = load_locale(normalize_lang(lang)).get(key)
    if not isinstance(found, dict):
        found = load_locale(DEFAULT_LANG).get(key)
    return found if isinstance(found, dict) else {}


def choice_pairs(lang: str | None, key: str, values: Iterable[Any]) -> list[tuple[str, Any]]:
    """`(label, value)` pairs for a dropdown or radio whose choice names are translated."""
    names = entry(lang, key).get("choices") or {}
    return [(str(names.get(value, value)), value) for value in values]


class Manager:
    """Registry of the board's components, keyed `"tab.elem"`."""

    def __init__(self) -> None:
        self._elems: dict[str, Any] = {}
        self._keys: dict[int, str] = {}

    def add(self, tab: str, elems: dict[str, Any]) -> None:
        """Register `elems` (elem name -> component) under `tab`."""
        for name, component in elems.items():
            key = f"{tab}.{name}"
            if key in self._elems:
                raise ValueError(f"component {key} registered twice")
            self._elems[key] = component
            self._keys[id(component)] = key

    def get(self, key: str) -> Any:
        return self._elems[key]

    def __getitem__(self, key: str) -> Any:
        return self._elems[key]

    def __contains__(self, key: str) -> bool:
        return key in self._elems

    def __iter__(self) -> Iterator[str]:
        return iter(self._elems)

    def __len__(self) -> int:
        return len(self._elems)

    def key_of(self, component: Any) -> str:
        return self._keys[id(component)]

    def tab(self, tab: str) -> dict[str, Any]:
        """The components of one tab, keyed by elem name."""
        prefix = f"{tab}."
        return {key[len(prefix) :]: comp for key, comp in self._elems.items() if key.startswith(prefix)}

    def components(self) -> list[Any]:
        return list(self._elems.values())

    def by_key(self, values: dict[Any, Any]) -> dict[str, Any]:
        """`{component: value}` as gradio passes a set of inputs -> `{"tab.elem": value}`."""
        return {self._keys[id(comp)]: value for comp, value in values.items() if id(comp) in self._keys}

    def labelled(self) -> dict[str, Any]:
        """The components that carry text from the locales (everything except pure state holders)."""
        return {key: comp for key, comp in self._elems.items() if _text_kind(comp) is not None}

    def relabel(self, lang: str | None) -> dict[Any, Any]:
        """`{component: gr.update(...)}` giving every labelled component its text in `lang`."""
        import gradio as gr

        updates: dict[Any, Any] = {}
        for key, comp in self.labelled().items():
            text = entry(lang, key)
            kind = _text_kind(comp)
            if kind == "value":
                updates[comp] = gr.update(value=text.get("label", ""))
                continue
            change: dict[str, Any] = {"label": text.get("label")}
            if kind == "label_info" and "info" in text:
                change["info"] = text["info"]
            if "placeholder" in text:
                change["placeholder"] = text["placeholder"]
            choices = getattr(comp, "choices", None)
            if text.get("choices") and choices:
                change["choices"] = choice_pairs(lang, key, [value for _, value in choices])
            updates[comp] = gr.update(**change)
        return updates


def _text_kind(component: Any) -> str | None:
    """How a component shows its locale text: as its value (buttons), label (+ info), or not at all (state, and
    HTML / Markdown, whose text a handler computes in the page's language: a relabel would overwrite it)."""
    import gradio as gr

    if isinstance(component, gr.DownloadButton):
        return "label"
    if isinstance(component, gr.Button):
        return "value"
    if isinstance(component, (gr.Tab, gr.Accordion)):
        return "label"
    if isinstance(component, gr.blocks.BlockContext):  # rows, columns, groups: no text of their own
        return None
    if isinstance(component, (gr.State, gr.Timer, gr.HTML, gr.Markdown)):
        return None
    if isinstance(component, (gr.Plot, gr.File, gr.Dataframe)):
        return "label"
    return "label_info"


def initial(lang: str | None, key: str) -> dict[str, Any]:
    """Constructor keywords (`label`, `info`, `placeholder`) for a component built in `lang`: the first paint is
    already labelled, no on-load round trip."""
    text = entry(lang, key)
    kwargs: dict[str, Any] = {}
    for name in ("label", "info", "placeholder"):
        if name in text:
            kwargs[name] = text[name]
    return kwargs


def button_label(lang: str | None, key: str) -> dict[str, Any]:
    """Constructor keywords for a button built in `lang`: its label is its value."""
    return {"value": initial(lang, key).get("label", "")}
