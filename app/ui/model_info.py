"""The Model dock: the card of the selected panel's model, laid out for people (name, task, file,
input in words, labels with colour swatches, output in words, where it comes from, where it runs)."""

from __future__ import annotations

from html import escape
from typing import Any

from PySide6.QtWidgets import QTextBrowser

from loupe.inference.input_fit import describe_expected

EMPTY = "<p>No model loaded.</p><p>Drop an .onnx file on the window or use File ▸ Open model.</p>"


def words(value: Any) -> str:
    """A card value as text: dicts as "key: value" lines, lists joined, no Python reprs."""
    if isinstance(value, dict):
        return "; ".join(f"{str(k).replace('_', ' ')}: {words(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return ", ".join(words(v) for v in value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def input_words(inp) -> str:
    """The preprocessing as a sentence: colour, scale, normalisation, size rule."""
    chans = "one grey channel" if inp.color == "GRAY" else f"three channels in {inp.color} order"
    if inp.raw_values:
        values = f"raw scan values (e.g. HU) times {inp.scale:.4g}"
    elif inp.window is not None:
        values = f"the scan through window {inp.window[0]:g}/{inp.window[1]:g}, 0-255 times {inp.scale:.4g}"
    else:
        values = "0-255 pixel values" + (" divided by 255" if abs(inp.scale - 1 / 255) < 1e-9
                                         else f" times {inp.scale:.4g}")
    mean, std = words([round(m, 4) for m in inp.mean]), words([round(s, 4) for s in inp.std])
    norm = "" if all(m == 0 for m in inp.mean) and all(s == 1 for s in inp.std) else \
        f", minus mean ({mean}), divided by std ({std})"
    if inp.fixed_size and getattr(inp, "letterbox", False):
        size = (f"fitted into {inp.fixed_size[1]}×{inp.fixed_size[0]} (width×height) keeping its aspect, "
                f"padded with {inp.pad_value:g}")
    elif inp.fixed_size and getattr(inp, "center_crop", False):
        size = f"scaled to cover {inp.fixed_size[1]}×{inp.fixed_size[0]} (width×height), centre cut out"
    elif inp.fixed_size:
        size = f"resized to {inp.fixed_size[1]}×{inp.fixed_size[0]} (width×height)"
    elif inp.size_multiple > 1:
        size = f"any size, padded to a multiple of {inp.size_multiple}"
    else:
        size = "any size"
    return f"{chans}; {values}{norm}; {size}"


def output_words(task: str, output: dict[str, Any]) -> str:
    if not output:
        return "as the task reads it"
    parts = []
    if "kind" in output:
        parts.append(f"{output['kind']}")
    if "stride" in output:
        s = output["stride"]
        parts.append(f"one value per {s}×{s} pixels" if s != 1 else "one value per pixel")
    parts += [_output_item(k, v) for k, v in output.items() if k not in ("kind", "stride")]
    return ", ".join(parts)


def _output_item(key: str, value: Any) -> str:
    """One ``loupe.output`` entry in words; landmark contours by name and size, not index lists."""
    if key == "contours" and isinstance(value, list) and all(isinstance(c, dict) for c in value):
        return "contours " + "; ".join(
            f"{c.get('name')} ({len(c.get('points') or [])} points{', open' if c.get('closed') is False else ''})"
            for c in value)
    if key == "point_names" and isinstance(value, list):
        return f"{len(value)} point names"
    return f"{key.replace('_', ' ')} {words(value)}"


def card_html(lm) -> str:
    """One loaded model's card as HTML for the dock."""
    eng, card = lm.engine, lm.engine.card
    rows: list[tuple[str, str]] = [
        ("Task", escape(card.task) + ("" if card.origin == "metadata" else f" (card from {escape(card.origin)})")),
        ("File", escape(str(eng.path))),
        ("Expects", escape(describe_expected(card))),
        ("Input", escape(input_words(card.input))),
    ]
    if card.labels:
        swatches = []
        for i, label in enumerate(card.labels):
            rgb = card.palette[i] if i < len(card.palette) else None
            box = (f"<span style='background-color:rgb{tuple(rgb)}; color:rgb{tuple(rgb)};"
                   f" border:1px solid #888'>&nbsp;&nbsp;&nbsp;</span> ") if rgb else ""
            swatches.append(f"{box}{escape(label)}")
        rows.append((f"Labels ({len(card.labels)})", "<br>".join(swatches)))
    rows.append(("Output", escape(output_words(card.task, card.output))))
    for k, v in card.source.items():
        rows.append((escape(str(k).replace("_", " ").capitalize()), escape(words(v))))
    rows.append(("Runs on", escape(f"{', '.join(eng.providers)} — {eng.provider_note}; {eng.threads} threads")))
    rows.append(("Tensors", escape(", ".join(t.describe() for t in eng.inputs + eng.outputs))))
    body = "".join(f"<tr><td valign='top'><b>{k}</b>&nbsp;</td><td>{v}</td></tr>" for k, v in rows)
    return f"<h3>{escape(card.name or lm.name)}</h3><table cellspacing='2'>{body}</table>"


class ModelInfo(QTextBrowser):
    """The dock's text: the card of ``show(lm)``'s model, or how to load one."""

    def __init__(self) -> None:
        super().__init__()
        self.setOpenLinks(False)
        self.shown = None
        self.setHtml(EMPTY)

    def show_model(self, lm) -> None:
        self.shown = lm
        self.setHtml(EMPTY if lm is None else card_html(lm))

    def follow(self, win) -> None:
        """Show the model of ``win``'s selected panel tab (the first model where no tab is one)."""
        panel = win.panel_tabs.currentWidget()
        if panel is not None and panel in win.panels:
            self.show_model(win.models[win.panels.index(panel)])
        else:
            self.show_model(win.models[0] if win.models else None)
