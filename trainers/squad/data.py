"""SQuAD v1.1 data: read and validate the official JSON format (or TFDS), write it.

Format: ``{"data": [{"title", "paragraphs": [{"context", "qas": [{"id",
"question", "answers": [{"text", "answer_start"}]}]}]}]}``.

Validation: a file that is not JSON or lacks the structure is a one-line
`TrainerError` naming the file and the place. A question with missing or
ill-typed keys, no answers, a duplicate id, or an answer whose `answer_start`
does not point at its `text` in the context is *bad*: with ``strict=True``
(prediction files) that is an error naming the question id; with
``strict=False`` (training files) the question is skipped and reported in
`SquadSet.skipped` as ``(id, reason)``, never kept with a wrong label.
"""

import collections
import dataclasses
import json

from trainers.common import files
from trainers.common.errors import TrainerError, first_line


@dataclasses.dataclass(frozen=True)
class Answer:
    text: str
    start: int  # character offset in the context


@dataclasses.dataclass(frozen=True)
class SquadExample:
    qid: str
    title: str
    question: str
    context: str
    answers: tuple  # of Answer; the first labels training


@dataclasses.dataclass
class SquadSet:
    examples: list
    skipped: list  # [(id, reason)]
    source: str

    def gold_answers(self):
        """id -> [answer texts] (what the metric compares against)."""
        return {e.qid: [a.text for a in e.answers] for e in self.examples}

    def skipped_line(self, limit=5):
        if not self.skipped:
            return ""
        shown = "; ".join(f"{qid}: {reason}" for qid, reason in self.skipped[:limit])
        more = f"; ... {len(self.skipped) - limit} more" if len(self.skipped) > limit else ""
        return f"skipped {len(self.skipped)} bad example(s) of {self.source}: {shown}{more}"


class _Bad(Exception):
    """A bad question (reason in args[0])."""


def _answer(raw, context, k):
    if not isinstance(raw, dict):
        raise _Bad(f"answer {k} is not an object")
    for key in ("text", "answer_start"):
        if key not in raw:
            raise _Bad(f"answer {k} has no '{key}'")
    text, start = raw["text"], raw["answer_start"]
    if not isinstance(text, str) or not text.strip():
        raise _Bad(f"answer {k} has an empty or non-string 'text'")
    if isinstance(start, bool) or not isinstance(start, int):
        raise _Bad(f"answer {k} has a non-integer 'answer_start' {start!r}")
    if not 0 <= start <= len(context) - len(text):
        raise _Bad(f"answer {k} 'answer_start' {start} lies outside the context "
                   f"({len(context)} characters)")
    found = context[start:start + len(text)]
    if found != text:
        raise _Bad(f"answer {k} 'answer_start' {start} does not match its text "
                   f"{text!r} (the context there reads {found!r})")
    return Answer(text, start)


def _question(qa, context, title):
    if not isinstance(qa.get("question"), str) or not qa["question"].strip():
        raise _Bad("no question text ('question' missing or empty)")
    if qa.get("is_impossible"):
        raise _Bad("an unanswerable question (SQuAD v2.0 is not supported)")
    answers = qa.get("answers")
    if not isinstance(answers, list) or not answers:
        raise _Bad("no answers ('answers' missing or empty)")
    parsed = tuple(_answer(a, context, k) for k, a in enumerate(answers))
    return SquadExample(str(qa["id"]), title, qa["question"], context, parsed)


def parse_squad(data, source, strict):
    """A `SquadSet` of the decoded JSON `data` (see the module docstring)."""
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise TrainerError(f"{source}: no top-level 'data' list (is this a SQuAD v1.1 file?)")
    examples, skipped, seen = [], [], set()
    for i, article in enumerate(data["data"]):
        where = f"{source}: article {i}"
        if not isinstance(article, dict) or not isinstance(article.get("paragraphs"), list):
            raise TrainerError(f"{where} has no 'paragraphs' list")
        title = str(article.get("title", f"article {i}"))
        for j, paragraph in enumerate(article["paragraphs"]):
            where = f"{source}: article {i} ({title!r}) paragraph {j}"
            if not isinstance(paragraph, dict):
                raise TrainerError(f"{where} is not an object")
            qas = paragraph.get("qas")
            ids = [q.get("id") for q in qas if isinstance(q, dict)] if isinstance(qas, list) else []
            if not isinstance(paragraph.get("context"), str):
                raise TrainerError(f"{where} (questions {ids[:3]}) has no string 'context'")
            if not isinstance(qas, list):
                raise TrainerError(f"{where} has no 'qas' list")
            for k, qa in enumerate(qas):
                if not isinstance(qa, dict) or not isinstance(qa.get("id"), (str, int)):
                    raise TrainerError(f"{where} question {k} has no 'id'")
                qid = str(qa["id"])
                if qid in seen:
                    raise TrainerError(f"{source}: question id {qid!r} occurs twice")
                seen.add(qid)
                try:
                    examples.append(_question(qa, paragraph["context"], title))
                except _Bad as e:
                    if strict:
                        raise TrainerError(f"{source}: question {qid!r}: {e.args[0]}")
                    skipped.append((qid, e.args[0]))
    return SquadSet(examples, skipped, source)


def load_squad_file(path, strict):
    """Read a SQuAD v1.1 JSON file into a `SquadSet`."""
    if not files.exists(path):
        raise TrainerError(f"SQuAD file {path} does not exist")
    if files.isdir(path):
        raise TrainerError(f"SQuAD file {path} is a directory")
    try:
        data = json.loads(files.read_text(path))
    except json.JSONDecodeError as e:
        raise TrainerError(f"{path} is not valid JSON: {e.msg} at line {e.lineno} "
                           f"column {e.colno}")
    except Exception as e:  # noqa: BLE001 - unreadable, not UTF-8, ... in one line
        raise TrainerError(f"cannot read SQuAD file {path}: {first_line(e)}")
    result = parse_squad(data, path, strict)
    if not result.examples:
        raise TrainerError(f"{path} contains no usable questions"
                           + (f" ({result.skipped_line()})" if result.skipped else ""))
    return result


def tfds_as_squad_json(name, split):
    """A prepared TFDS SQuAD split (e.g. ``squad/v1.1``, ``train``) in the JSON format."""
    try:
        import tensorflow_datasets as tfds

        ds = tfds.load(name, split=split, download=False)
    except Exception as e:  # noqa: BLE001 - one-line report
        first = first_line(e)
        raise TrainerError(f"--tfds={name} split {split} is not available (prepare it with "
                           f"`tfds build squad`): {first}")
    articles = collections.OrderedDict()
    for ex in ds.as_numpy_iterator():
        title = ex["title"].decode("utf-8")
        context = ex["context"].decode("utf-8")
        paragraphs = articles.setdefault(title, collections.OrderedDict())
        answers = [{"text": t.decode("utf-8"), "answer_start": int(s)}
                   for t, s in zip(ex["answers"]["text"], ex["answers"]["answer_start"])]
        paragraphs.setdefault(context, []).append(
            {"id": ex["id"].decode("utf-8"), "question": ex["question"].decode("utf-8"),
             "answers": answers})
    return {"version": "1.1", "data": [
        {"title": t, "paragraphs": [{"context": c, "qas": q} for c, q in ps.items()]}
        for t, ps in articles.items()]}


def to_squad_json(examples, version):
    """Examples -> the JSON format (paragraphs grouped by title and context)."""
    articles = collections.OrderedDict()
    for e in examples:
        paragraphs = articles.setdefault(e.title, collections.OrderedDict())
        paragraphs.setdefault(e.context, []).append(
            {"id": e.qid, "question": e.question,
             "answers": [{"text": a.text, "answer_start": a.start} for a in e.answers]})
    return {"version": version, "data": [
        {"title": t, "paragraphs": [{"context": c, "qas": q} for c, q in ps.items()]}
        for t, ps in articles.items()]}


def write_json(obj, path):
    files.write_text_atomically(path, json.dumps(obj, ensure_ascii=False, indent=1))
