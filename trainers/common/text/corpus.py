"""Text corpora as lists of documents (a document = a list of paragraphs).

`--corpus` forms:

* ``wiki`` (default): a real English Wikipedia excerpt (106 articles), found
  inside the PyPI wheel gensim==4.4.0. Fetched once with
  ``pip download --no-deps`` (nothing is installed), converted with
  `trainers.common.text.wikitext`, and cached as plain text under the cache
  directory (``$ACCLIP_TF_CACHE``, default ``~/.cache/acclip_tf``) with an
  attribution note (CC BY-SA).
* ``files:GLOB``: plain-text files; documents are blocks separated by blank
  lines, each non-empty line of a block a paragraph.
* ``tfds:NAME`` (e.g. ``tfds:wikipedia/20230601.en``): a prepared TFDS
  dataset with a ``text`` feature, read from its ``train`` split.

`split_documents` holds out whole documents (a fixed seed) for evaluation.
"""

import bz2
import glob
import os
import random
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
import zipfile

from trainers.common import files
from trainers.common.errors import TrainerError, first_line
from trainers.common.files import write_text_atomically
from trainers.common.progress import Progress
from trainers.common.text.wikitext import wiki_to_paragraphs

CACHE_ENV = "ACCLIP_TF_CACHE"
# A local copy of the dump member below (e.g. tests/data/enwiki-shortened.xml.bz2, which the
# tests use): converted instead of fetching the wheel, so nothing needs the network.
DUMP_ENV = "ACCLIP_TF_WIKI_DUMP"
GENSIM_REQUIREMENT = "gensim==4.4.0"
WIKI_MEMBER = ("gensim/test/test_data/"
               "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2")
WIKI_TEXT = "enwiki-excerpt.txt"
ATTRIBUTION = """\
enwiki-excerpt.txt: text converted by acclip-tf (trainers/common/text/wikitext.py) from
{member}
as shipped in the PyPI wheel {requirement} (https://pypi.org/project/gensim/4.4.0/),
a shortened dump of the English Wikipedia (106 articles, 2016 revisions).

Wikipedia text is available under the Creative Commons Attribution-ShareAlike
License (CC BY-SA 3.0/4.0, https://creativecommons.org/licenses/by-sa/4.0/);
the authors are the Wikipedia contributors, listed in each article's history at
https://en.wikipedia.org/wiki/<Title>?action=history. The converted text is a
derivative work under the same licence.
"""


def cache_dir():
    return files.absolute(os.environ.get(CACHE_ENV) or "~/.cache/acclip_tf")


# ---------------------------------------------------------------- wiki
def parse_dump(xml_bytes):
    """[(title, markup)] of the main-namespace, non-redirect pages of a MediaWiki dump."""
    root = ET.fromstring(xml_bytes)
    ns = root.tag[: root.tag.index("}") + 1] if root.tag.startswith("{") else ""
    pages = []
    for page in root.iter(f"{ns}page"):
        if page.find(f"{ns}redirect") is not None or page.findtext(f"{ns}ns") != "0":
            continue
        markup = page.findtext(f"{ns}revision/{ns}text") or ""
        pages.append((page.findtext(f"{ns}title"), markup))
    return pages


def _download_wheel(directory):
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
           "--dest", directory, GENSIM_REQUIREMENT]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wheels = files.glob(files.join(directory, "gensim-*.whl"))
    if proc.returncode != 0 or not wheels:
        last = (proc.stderr.strip().splitlines() or ["no wheel downloaded"])[-1]
        raise TrainerError(f"cannot fetch the Wikipedia excerpt ({GENSIM_REQUIREMENT} via pip "
                           f"download): {last}; or pass --corpus=files:GLOB")
    return wheels[0]


def write_documents(path, documents):
    """One paragraph a line, documents separated by a blank line (the files: format)."""
    write_text_atomically(path, "\n\n".join("\n".join(doc) for doc in documents) + "\n")


def read_documents(path):
    blocks = files.read_text(path).split("\n\n")
    docs = [[line.strip() for line in b.splitlines() if line.strip()] for b in blocks]
    return [d for d in docs if d]


def wiki_excerpt(directory=None):
    """The converted excerpt's documents; fetched and cached on first use."""
    directory = directory or files.join(cache_dir(), "wiki")
    text_path = files.join(directory, WIKI_TEXT)
    if not files.exists(text_path):
        files.makedirs(directory, "the Wikipedia cache")
        progress = Progress("Wikipedia excerpt", unit="articles converted", every=0)
        xml_bytes = bz2.decompress(_dump_bytes(directory, progress))
        pages = parse_dump(xml_bytes)
        progress.note(f"converting {len(pages)} articles to paragraphs ...")
        progress.total, progress.every = len(pages), 5.0
        documents = []
        for _, markup in pages:
            paragraphs = wiki_to_paragraphs(markup)
            progress.update()
            if paragraphs:
                documents.append(paragraphs)
        progress.done(f"{len(documents)} documents")
        files.write_text(files.join(directory, "ATTRIBUTION.txt"),
                         ATTRIBUTION.format(member=WIKI_MEMBER, requirement=GENSIM_REQUIREMENT))
        write_documents(text_path, documents)
    return read_documents(text_path)


def _dump_bytes(directory, progress):
    """The shortened dump (bz2 bytes): `$ACCLIP_TF_WIKI_DUMP` when set, else the member
    of the gensim wheel, fetched with pip download."""
    local = os.environ.get(DUMP_ENV)
    if local:
        if not files.exists(local):
            raise TrainerError(f"${DUMP_ENV}={local} does not exist")
        progress.note(f"converting the dump {local} (cached in {directory}) ...")
        with files.open_file(local, "rb") as f:
            return f.read()
    progress.note(f"fetching {GENSIM_REQUIREMENT} with pip download (once per machine, "
                  f"cached in {directory}) ...")
    with tempfile.TemporaryDirectory(dir=directory) as tmp:
        wheel = _download_wheel(tmp)
        with zipfile.ZipFile(wheel) as z:
            return z.read(WIKI_MEMBER)


# ---------------------------------------------------------------- others
def files_corpus(pattern):
    if files.is_remote(pattern):  # gs://bucket/*.txt and the like
        paths = sorted(p for p in files.glob(pattern) if not files.isdir(p))
    else:
        # Local: Python's glob, for ** (recursive) patterns gfile does not expand.
        paths = sorted(glob.glob(files.absolute(pattern), recursive=True))
        paths = [p for p in paths if files.isfile(p)]
    if not paths:
        raise TrainerError(f"--corpus=files:{pattern} matches no files")
    documents = []
    for p in paths:
        try:
            documents.extend(read_documents(p))
        except Exception as e:  # noqa: BLE001 - unreadable, not UTF-8, ... in one line
            raise TrainerError(f"cannot read corpus file {p}: {first_line(e)}")
    return documents


def tfds_corpus(name, max_documents=None):
    try:
        import tensorflow_datasets as tfds

        split = "train" if not max_documents else f"train[:{max_documents}]"
        ds = tfds.load(name, split=split, download=False)
    except Exception as e:  # noqa: BLE001 - one-line report
        first = first_line(e)
        raise TrainerError(f"--corpus=tfds:{name} is not available (prepare it with "
                           f"`tfds build`): {first}")
    documents = []
    for example in ds.as_numpy_iterator():
        text = example["text"].decode("utf-8")
        paragraphs = [p.strip() for p in text.split("\n") if p.strip()]
        if paragraphs:
            documents.append(paragraphs)
    return documents


def load_corpus(spec, max_documents=None):
    """Documents of `--corpus` (see the module docstring)."""
    if max_documents is not None and max_documents < 0:
        raise TrainerError(f"--max_documents must be >= 0, got {max_documents}")
    if spec in (None, "", "wiki"):
        docs = wiki_excerpt()
    elif spec.startswith("files:"):
        docs = files_corpus(spec[len("files:"):])
    elif spec.startswith("tfds:"):
        docs = tfds_corpus(spec[len("tfds:"):], max_documents)
    else:
        raise TrainerError(f"unknown --corpus={spec!r}; use wiki, files:GLOB or tfds:NAME")
    if not docs:
        raise TrainerError(f"--corpus={spec} contains no text")
    return docs[:max_documents] if max_documents else docs


def split_documents(documents, eval_fraction=0.1, seed=0, with_test=False):
    """(train, held_out) by whole documents, shuffled with a fixed seed; with
    `with_test`, (train, validation, test): the held-out documents halved (validation
    gets the odd one), so the training documents are the same either way.

    At least one document is held out (and one kept) when there are two or more.
    """
    if not 0 < eval_fraction < 1:
        raise TrainerError(f"--eval_fraction must lie in (0, 1), got {eval_fraction}")
    if len(documents) < 2:
        raise TrainerError(
            f"the corpus has {len(documents)} document(s); at least 2 are needed "
            "for a held-out split")
    order = list(range(len(documents)))
    random.Random(seed).shuffle(order)
    n_eval = min(max(1, round(eval_fraction * len(documents))), len(documents) - 1)
    held = sorted(order[:n_eval])
    train = sorted(order[n_eval:])
    if not with_test:
        return [documents[i] for i in train], [documents[i] for i in held]
    n_validation = (n_eval + 1) // 2
    validation = sorted(order[:n_validation])
    test = sorted(order[n_validation:n_eval])
    return ([documents[i] for i in train], [documents[i] for i in validation],
            [documents[i] for i in test])
