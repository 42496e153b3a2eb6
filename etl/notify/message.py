"""The alert model and its rendering (plain text, Markdown, HTML) in Chinese and English."""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal, get_args
from urllib.parse import parse_qsl, quote, quote_plus, urlsplit

AlertKind = Literal["failure", "quality_gate", "differences"]
Severity = Literal["info", "warning", "error", "critical"]
Lang = Literal["zh-CN", "en"]

ALERT_KINDS: tuple[str, ...] = get_args(AlertKind)
SEVERITIES: tuple[str, ...] = get_args(Severity)
LANGS: tuple[str, ...] = get_args(Lang)

MASK = "***"
TRUNCATED = "…"

# Up to the last '@' of the word: a password holding a raw '@' is masked whole.
_URL_CREDENTIALS = re.compile(r"(?P<pre>[A-Za-z][A-Za-z0-9+.\-]*://[^\s:/?#@]*):(?P<pw>[^\s]*)@")
_SECRET_ASSIGNMENTS = re.compile(
    r"(?i)(?P<pre>\b(?:pwd|password|passwd|secret|access_token)\s*=\s*|[?&]key=)(?P<value>[^\s;&'\"]+)"
)

_TEXTS: dict[str, dict[str, str]] = {
    "zh-CN": {
        "failure": "同步失败",
        "quality_gate": "质量门禁未通过",
        "differences": "发现新的未关闭对账差异",
        "info": "提示",
        "warning": "警告",
        "error": "错误",
        "critical": "严重",
        "run_id": "运行 ID",
        "dag_run": "DAG 运行",
        "entity": "实体",
        "counts": "统计",
        "report": "报告",
        "what": "问题",
        "heading": "【{severity}】{kind}：{title}",
        "sep": "：",
        "list_sep": "，",
    },
    "en": {
        "failure": "Sync failed",
        "quality_gate": "Quality gate failed",
        "differences": "New open reconciliation differences",
        "info": "INFO",
        "warning": "WARNING",
        "error": "ERROR",
        "critical": "CRITICAL",
        "run_id": "Run ID",
        "dag_run": "DAG run",
        "entity": "Entity",
        "counts": "Counts",
        "report": "Report",
        "what": "What",
        "heading": "[{severity}] {kind}: {title}",
        "sep": ": ",
        "list_sep": ", ",
    },
}

_COUNT_LABELS: dict[str, dict[str, str]] = {
    "zh-CN": {
        "new_open_differences": "新增未关闭差异",
        "open_differences": "未关闭差异",
        "failed_expectations": "未通过的校验",
        "rows_read": "读取行数",
        "rows_published": "发布行数",
        "rows_rejected": "拒绝行数",
    },
    "en": {
        "new_open_differences": "new open differences",
        "open_differences": "open differences",
        "failed_expectations": "failed expectations",
        "rows_read": "rows read",
        "rows_published": "rows published",
        "rows_rejected": "rows rejected",
    },
}


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """Return ``text`` with every secret (and its URL-encoded forms) replaced by ``***``.

    Credentials embedded in URLs (``scheme://user:password@``) and obvious ``password=``/``pwd=``/
    ``access_token=``/``?key=`` assignments are masked even when the secret is not known.
    Empty secrets are ignored; longer secrets are replaced first so overlapping values mask fully.
    A short secret is masked only where it stands as one (the rules of `etl.logs.RedactingFilter.redact`):
    a database password `1` must not turn every `1` of a message into `***`.
    """
    from etl.logs import redact_with

    variants: set[str] = set()
    for secret in secrets:
        if secret:
            variants.update({secret, quote(secret, safe=""), quote_plus(secret, safe="")})
    text = redact_with(text, variants)
    text = _URL_CREDENTIALS.sub(lambda m: f"{m['pre']}:{MASK}@", text)
    return _SECRET_ASSIGNMENTS.sub(lambda m: f"{m['pre']}{MASK}", text)


def url_secrets(url: str | None) -> list[str]:
    """Return the secret parts of a webhook URL: the URL, its long query values and its token segment."""
    if not url:
        return []
    parts = urlsplit(url)
    found = [url, *(value for _, value in parse_qsl(parts.query) if len(value) >= 8)]
    last_segment = parts.path.rstrip("/").rsplit("/", 1)[-1]
    if len(last_segment) >= 16:
        found.append(last_segment)
    return found


def truncate_utf8(text: str, max_bytes: int, suffix: str = TRUNCATED) -> str:
    """Cut ``text`` so that its UTF-8 encoding (suffix included) fits in ``max_bytes``."""
    if len(text.encode("utf-8")) <= max_bytes:
        return text
    budget = max(0, max_bytes - len(suffix.encode("utf-8")))
    return text.encode("utf-8")[:budget].decode("utf-8", errors="ignore") + suffix


@dataclass(frozen=True)
class RenderedAlert:
    """Localised, redacted pieces of an alert; the building blocks of every output format."""

    heading: str
    rows: tuple[tuple[str, str], ...]
    counts: tuple[str, str] | None
    what_label: str
    what: str
    report_label: str
    report_path: str | None
    sep: str


@dataclass(frozen=True, kw_only=True)
class Alert:
    """Something operators must look at: a failed run, a failed quality gate or new differences.

    ``counts`` holds named figures such as ``new_open_differences`` (used by channel thresholds).
    """

    kind: AlertKind
    title: str
    run_id: str
    dag_run: str | None = None
    entity: str | None = None
    what: str
    counts: dict[str, int] = field(default_factory=dict, hash=False)
    report_path: str | None = None
    severity: Severity = "error"

    def __post_init__(self) -> None:
        if self.kind not in ALERT_KINDS:
            raise ValueError(f"alert kind must be one of {', '.join(ALERT_KINDS)}, got {self.kind!r}")
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity must be one of {', '.join(SEVERITIES)}, got {self.severity!r}")
        counts = dict(self.counts)
        for name, value in counts.items():
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"count {name!r} must be an int, got {type(value).__name__}")
        object.__setattr__(self, "counts", counts)

    def summary(self, lang: Lang = "zh-CN", secrets: Iterable[str | None] = ()) -> RenderedAlert:
        """Return the localised, redacted fields of this alert."""
        t = _texts(lang)
        secret_list = list(secrets)

        def clean(value: str) -> str:
            return redact(value, secret_list).strip()

        heading = t["heading"].format(severity=t[self.severity], kind=t[self.kind], title=clean(self.title))
        rows = [(t["run_id"], clean(self.run_id))]
        if self.dag_run:
            rows.append((t["dag_run"], clean(self.dag_run)))
        if self.entity:
            rows.append((t["entity"], clean(self.entity)))
        counts = None
        if self.counts:
            labels = _COUNT_LABELS[lang]
            figures = t["list_sep"].join(
                f"{clean(labels.get(name, name))} {value}" for name, value in self.counts.items()
            )
            counts = (t["counts"], figures)
        return RenderedAlert(
            heading=" ".join(heading.split()),
            rows=tuple(rows),
            counts=counts,
            what_label=t["what"],
            what=clean(self.what),
            report_label=t["report"],
            report_path=clean(self.report_path) if self.report_path else None,
            sep=t["sep"],
        )

    def subject(self, lang: Lang = "zh-CN", secrets: Iterable[str | None] = ()) -> str:
        """One-line subject (email subject, chat title), prefixed with ``[erp-oa-sync]``."""
        return f"[erp-oa-sync] {self.summary(lang, secrets).heading}"

    def render_text(
        self, lang: Lang = "zh-CN", secrets: Iterable[str | None] = (), *, max_bytes: int | None = None
    ) -> str:
        """Plain-text rendering; ``max_bytes`` shortens the ``what`` part to fit a UTF-8 byte budget."""
        return self._fit(_text, lang, secrets, max_bytes)

    def render_markdown(
        self, lang: Lang = "zh-CN", secrets: Iterable[str | None] = (), *, max_bytes: int | None = None
    ) -> str:
        """Markdown rendering for chat robots (the subset WeCom and DingTalk both display)."""
        return self._fit(_markdown, lang, secrets, max_bytes)

    def render_html(self, lang: Lang = "zh-CN", secrets: Iterable[str | None] = ()) -> str:
        """HTML rendering (escaped) for the email alternative part."""
        return self._fit(_html, lang, secrets, None)

    def _fit(
        self,
        fmt: Callable[[RenderedAlert], str],
        lang: Lang,
        secrets: Iterable[str | None],
        max_bytes: int | None,
    ) -> str:
        secret_list = list(secrets)
        parts = self.summary(lang, secret_list)
        rendered = redact(fmt(parts), secret_list)
        if max_bytes is None:
            return rendered
        while len(rendered.encode("utf-8")) > max_bytes and parts.what:
            excess = len(rendered.encode("utf-8")) - max_bytes
            keep = max(0, len(parts.what.encode("utf-8")) - excess - len(TRUNCATED.encode("utf-8")))
            shorter = truncate_utf8(parts.what, keep) if keep else ""
            parts = _replace_what(parts, shorter)
            rendered = redact(fmt(parts), secret_list)
        return truncate_utf8(rendered, max_bytes)


def _texts(lang: str) -> dict[str, str]:
    if lang not in _TEXTS:
        raise ValueError(f"lang must be one of {', '.join(LANGS)}, got {lang!r}")
    return _TEXTS[lang]


def _replace_what(parts: RenderedAlert, what: str) -> RenderedAlert:
    return RenderedAlert(
        heading=parts.heading,
        rows=parts.rows,
        counts=parts.counts,
        what_label=parts.what_label,
        what=what,
        report_label=parts.report_label,
        report_path=parts.report_path,
        sep=parts.sep,
    )


def _is_link(value: str) -> bool:
    return value.startswith(("http://", "https://"))


def _text(p: RenderedAlert) -> str:
    lines = [p.heading, ""]
    lines += [f"{label}{p.sep}{value}" for label, value in p.rows]
    if p.counts:
        lines.append(f"{p.counts[0]}{p.sep}{p.counts[1]}")
    if p.report_path:
        lines.append(f"{p.report_label}{p.sep}{p.report_path}")
    lines += ["", f"{p.what_label}{p.sep.rstrip()}", p.what]
    return "\n".join(lines).rstrip() + "\n"


def _markdown(p: RenderedAlert) -> str:
    # Inline code keeps identifiers such as scheduled__2024 from turning into emphasis.
    lines = [f"### {p.heading}", ""]
    lines += [f"- **{label}**{p.sep}`{value.replace('`', '')}`" for label, value in p.rows]
    if p.counts:
        lines.append(f"- **{p.counts[0]}**{p.sep}{p.counts[1]}")
    if p.report_path:
        shown = f"[{p.report_path}]({p.report_path})" if _is_link(p.report_path) else f"`{p.report_path}`"
        lines.append(f"- **{p.report_label}**{p.sep}{shown}")
    lines += ["", f"**{p.what_label}**{p.sep.rstrip()}"]
    lines += [f"> {line}" if line.strip() else ">" for line in p.what.splitlines() or [""]]
    return "\n".join(lines).rstrip() + "\n"


def _html(p: RenderedAlert) -> str:
    e = html.escape
    cells = [
        f"<tr><th align='left'>{e(label)}</th><td><code>{e(value)}</code></td></tr>"
        for label, value in p.rows
    ]
    if p.counts:
        cells.append(f"<tr><th align='left'>{e(p.counts[0])}</th><td>{e(p.counts[1])}</td></tr>")
    if p.report_path:
        shown = (
            f"<a href='{e(p.report_path)}'>{e(p.report_path)}</a>"
            if _is_link(p.report_path)
            else f"<code>{e(p.report_path)}</code>"
        )
        cells.append(f"<tr><th align='left'>{e(p.report_label)}</th><td>{shown}</td></tr>")
    return (
        "<!DOCTYPE html>\n<html><head><meta charset='utf-8'></head><body>\n"
        f"<h3>{e(p.heading)}</h3>\n<table>\n" + "\n".join(cells) + "\n</table>\n"
        f"<p><strong>{e(p.what_label)}</strong></p>\n<pre>{e(p.what)}</pre>\n</body></html>\n"
    )
