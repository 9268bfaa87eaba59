"""Wiki markup -> plain paragraphs (the project's own converter, no dependency).

What goes: comments, <ref>s, templates ``{{...}}`` (nested), tables
``{|...|}`` (nested), File/Image/Category/interlanguage links, headings,
list items, the reference sections at the end (See also, References, ...),
bold/italic quotes, HTML tags (with the content of <math>, <gallery> and
similar), bare external links. What stays: the text of internal links
(``[[a|b]]`` -> ``b``, ``[[a]]`` -> ``a``), the label of external links, and
the paragraphs (blank-line separated in the markup) as separate strings.
"""

import html
import re

# Namespaces whose links are not part of the running text.
_DROP_LINK = re.compile(r"^\s*:?\s*(file|image|category|media|wikipedia|wp|template|help|"
                        r"portal|special|talk|user|[a-z]{2,3}(-[a-z]+)?)\s*:", re.I)
_END_SECTIONS = re.compile(
    r"^=+\s*(see also|references|notes|footnotes|external links|further reading|"
    r"bibliography|sources|citations|notes and references)\s*=+\s*$", re.I | re.M)
_DROP_ELEMENTS = ("math", "gallery", "timeline", "score", "syntaxhighlight", "source",
                  "imagemap", "hiero", "chem", "ce", "graph", "mapframe", "code", "pre")

_COMMENT = re.compile(r"<!--.*?(-->|$)", re.S)
_REF_SELF = re.compile(r"<ref\b[^>]*/\s*>", re.I)
_REF = re.compile(r"<ref\b[^>]*>.*?</ref\s*>", re.I | re.S)
_TEMPLATE = re.compile(r"\{\{(?:(?!\{\{|\}\}).)*\}\}", re.S)
_TABLE = re.compile(r"\{\|(?:(?!\{\||\|\}).)*\|\}", re.S)
_LINK = re.compile(r"\[\[((?:(?!\[\[|\]\]).)*)\]\]", re.S)
_EXTERNAL = re.compile(r"\[(?:https?:|ftp:)?//[^\s\]]+(?:\s+([^\]]*))?\]")
_BARE_URL = re.compile(r"https?://\S+")
_QUOTES = re.compile(r"'{2,}")
_TAG = re.compile(r"</?[a-zA-Z][^>]*>")
_MAGIC = re.compile(r"__[A-Z]+__")
_HEADING = re.compile(r"^=+.*=+\s*$")


def _remove_nested(pattern, text, replacement=""):
    while True:
        text, n = pattern.subn(replacement, text)
        if n == 0:
            return text


def _link_text(match):
    inner = match.group(1)
    if _DROP_LINK.match(inner):
        return ""
    target, _, label = inner.partition("|")
    text = label if label else target
    # [[Foo (bar)|]] (the "pipe trick") -> Foo
    if _ and not label:
        text = re.sub(r"\s*\(.*?\)\s*$", "", target)
    return text.split("#")[-1] if not label and "#" in text and not text.startswith("#") else text


def _strip_elements(text):
    for tag in _DROP_ELEMENTS:
        text = re.sub(rf"<{tag}\b[^>]*>.*?</{tag}\s*>", "", text, flags=re.I | re.S)
        text = re.sub(rf"<{tag}\b[^>]*/\s*>", "", text, flags=re.I)
    return text


def wiki_to_paragraphs(markup, min_chars=40):
    """The article's running text as a list of paragraphs (whitespace-normalised)."""
    text = html.unescape(markup or "")
    text = _COMMENT.sub("", text)
    end = _END_SECTIONS.search(text)
    if end:
        text = text[: end.start()]
    text = _REF_SELF.sub("", text)
    text = _REF.sub("", text)
    text = _strip_elements(text)
    text = _remove_nested(_TEMPLATE, text)
    text = _remove_nested(_TABLE, text)
    text = _remove_nested(_LINK, text, _link_text)
    text = _EXTERNAL.sub(lambda m: m.group(1) or "", text)
    text = _BARE_URL.sub("", text)
    text = _QUOTES.sub("", text)
    text = _TAG.sub("", text)
    text = _MAGIC.sub("", text)
    text = html.unescape(text)  # entities written as &amp;nbsp; in the dump

    paragraphs, current = [], []
    for line in text.split("\n"):
        stripped = line.strip()
        # A blank line or heading ends the paragraph; so do list items and stray
        # table/template rows, which are dropped.
        if not stripped or _HEADING.match(stripped) or stripped[0] in "*#|!{}":
            paragraphs.append(" ".join(current))
            current = []
            continue
        current.append(stripped.lstrip(":;").strip())
    paragraphs.append(" ".join(current))
    out = []
    for p in paragraphs:
        p = re.sub(r"\s+", " ", p).strip()
        p = re.sub(r"\(\s*[,;]?\s*\)", "", p)  # "( )" left by removed templates
        p = re.sub(r"\s+([,.;:])", r"\1", p).strip()
        if len(p) >= min_chars and " " in p:
            out.append(p)
    return out
