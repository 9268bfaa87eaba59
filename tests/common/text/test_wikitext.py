"""The wiki-markup converter on real snippets of the gensim Wikipedia excerpt."""

import pytest

from trainers.common.text.corpus import parse_dump
from trainers.common.text.wikitext import wiki_to_paragraphs

# From the article "Anarchism" (the excerpt's first page), verbatim but shortened.
GODWIN = """\
As part of the political turmoil of the 1790s in the wake of the [[French Revolution]], [[William Godwin]] developed the first expression of [[anarchist schools of thought|modern anarchist thought]].<ref name="Everhart, Robert B 1982. p. 115">Everhart, Robert B. The Public School Monopoly. Pacific Institute for Public Policy Research, 1982. p. 115.</ref><ref name="godwinsep" /> Godwin was, according to [[Peter Kropotkin]], "the first to formulate the political and economical conceptions of anarchism",<ref name="EB1910" /> while Godwin attached his anarchist ideas to an early [[Edmund Burke]].

[[File:WilliamGodwin.jpg|left|thumb|upright|[[William Godwin]], "the first to formulate the political and economical conceptions of anarchism".<ref name="EB1910"/>]]
Godwin is generally regarded as the founder of the school of thought known as 'philosophical anarchism'. He argued in ''[[Political Justice]]'' (1793)<ref name="godwinsep">{{sep entry|godwin|William Godwin|Mark Philip|2006-05-20}}</ref> that government has an inherently malevolent influence on society.

{{Authority control}}

[[Category:Anarchism| ]]
[[Category:Political culture]]
"""

# From the article "Albedo": a heading, then a table with a nested cite template.
ALBEDO_TABLE = """\
==Terrestrial albedo==
{| class="wikitable" style="float:right; margin:10px"
|+ Sample albedos
|-
! Surface
! Typical<br>albedo
|-
| Fresh asphalt || 0.04<ref name="heat island">{{cite web
 | last=Pon | first=Brian | date=30 June 1999
 | title=Pavement Albedo | publisher=Heat Island Group
| archivedate= 29 August 2007<!--Added by DASHBot-->}}</ref>
|-
| Fresh snow || 0.80&ndash;0.90
|}
Albedos of typical materials in visible light range from up to 0.9 for fresh snow to about 0.04 for charcoal, one of the darkest substances.
"""

LEAD = """\
{{Redirect2|Anarchist|Anarchists|the fictional character|Anarchist (comics)|other uses|Anarchists (disambiguation)}}
{{Use British English|date=January 2014}}
'''Anarchism''' is a [[political philosophy]] that advocates [[self-governance|self-governed]] societies based on voluntary institutions.<ref>"ANARCHISM, a social philosophy." George Woodcock.</ref>
"""


def test_links_refs_and_files():
    paragraphs = wiki_to_paragraphs(GODWIN)
    assert paragraphs == [
        "As part of the political turmoil of the 1790s in the wake of the French Revolution, "
        "William Godwin developed the first expression of modern anarchist thought. Godwin "
        "was, according to Peter Kropotkin, \"the first to formulate the political and "
        "economical conceptions of anarchism\", while Godwin attached his anarchist ideas to "
        "an early Edmund Burke.",
        "Godwin is generally regarded as the founder of the school of thought known as "
        "'philosophical anarchism'. He argued in Political Justice (1793) that government "
        "has an inherently malevolent influence on society.",
    ]


def test_tables_headings_and_nested_templates_removed():
    paragraphs = wiki_to_paragraphs(ALBEDO_TABLE)
    assert paragraphs == [
        "Albedos of typical materials in visible light range from up to 0.9 for fresh snow "
        "to about 0.04 for charcoal, one of the darkest substances."
    ]


def test_templates_bold_and_piped_links():
    assert wiki_to_paragraphs(LEAD) == [
        "Anarchism is a political philosophy that advocates self-governed societies based "
        "on voluntary institutions."
    ]


def test_reference_sections_end_the_text():
    markup = LEAD + "\n==See also==\n* [[List of anarchist political ideologies]]\n" \
        "Some later text that belongs to the references section of the article.\n"
    assert len(wiki_to_paragraphs(markup)) == 1


def test_parse_dump_skips_redirects_and_other_namespaces():
    xml = b"""<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.10/">
    <page><title>AccessibleComputing</title><ns>0</ns><redirect title="Computer accessibility" />
      <revision><text>#REDIRECT [[Computer accessibility]]</text></revision></page>
    <page><title>Albedo</title><ns>0</ns><revision><text>Albedo text.</text></revision></page>
    <page><title>Talk:Albedo</title><ns>1</ns><revision><text>chat</text></revision></page>
    </mediawiki>"""
    assert parse_dump(xml) == [("Albedo", "Albedo text.")]


def test_the_whole_excerpt_converts_cleanly(wiki_documents):
    assert 90 <= len(wiki_documents) <= 106
    text = "\n".join(p for d in wiki_documents for p in d)
    for leftover in ("{{", "}}", "[[", "]]", "<ref", "{|", "|}", "Category:", "File:"):
        assert leftover not in text, leftover
    assert len(text) > 1_000_000


def test_the_excerpt_comes_from_the_shipped_dump_without_network(tmp_path, monkeypatch):
    """`$ACCLIP_TF_WIKI_DUMP` (tests/data's copy of the wheel's dump) is converted into the
    cache; a missing one is one error naming it; without it, a failed fetch is one error."""
    from trainers.common.errors import TrainerError
    from trainers.common.text import corpus

    monkeypatch.setenv(corpus.CACHE_ENV, str(tmp_path / "cache"))
    docs = corpus.wiki_excerpt()
    assert 90 <= len(docs) <= 106
    assert (tmp_path / "cache" / "wiki" / "ATTRIBUTION.txt").exists()

    monkeypatch.setenv(corpus.DUMP_ENV, str(tmp_path / "missing.bz2"))
    with pytest.raises(TrainerError, match=r"ACCLIP_TF_WIKI_DUMP=.*missing\.bz2 does not exist"):
        corpus.wiki_excerpt(str(tmp_path / "other"))

    monkeypatch.delenv(corpus.DUMP_ENV)
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # no index: pip download fails at once
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path))
    with pytest.raises(TrainerError, match="cannot fetch the Wikipedia excerpt"):
        corpus.wiki_excerpt(str(tmp_path / "third"))
