"""Reading and validating SQuAD v1.1 JSON, and the generated cloze task."""

import json

import pytest

from squad_helpers import HANDWRITTEN
from trainers.common.errors import TrainerError
from trainers.squad import cloze
from trainers.squad import data as squad


def _load():
    with open(HANDWRITTEN, encoding="utf-8") as f:
        return json.load(f)


def _write(tmp_path, obj, name="set.json"):
    path = tmp_path / name
    path.write_text(obj if isinstance(obj, str) else json.dumps(obj), encoding="utf-8")
    return str(path)


def test_handwritten_set_reads_with_multiple_gold_answers():
    result = squad.load_squad_file(HANDWRITTEN, strict=True)
    assert len(result.examples) == 10 and not result.skipped
    gold = result.gold_answers()
    assert gold["h-middle"] == ["the Church of St. Alban", "Church of St. Alban", "St. Alban"]
    for e in result.examples:
        for a in e.answers:
            assert e.context[a.start:a.start + len(a.text)] == a.text


def test_malformed_json_names_the_file(tmp_path):
    path = _write(tmp_path, '{"data": [ {"title": "x", ')
    with pytest.raises(TrainerError, match=r"set\.json is not valid JSON: .* line 1"):
        squad.load_squad_file(path, strict=True)


def test_missing_structure(tmp_path):
    with pytest.raises(TrainerError, match="no top-level 'data' list"):
        squad.load_squad_file(_write(tmp_path, {"version": "1.1"}), strict=True)
    data = _load()
    del data["data"][0]["paragraphs"][0]["context"]
    with pytest.raises(TrainerError, match=r"paragraph 0 \(questions \['h-start'.*no string 'context'"):
        squad.load_squad_file(_write(tmp_path, data), strict=True)
    with pytest.raises(TrainerError, match="does not exist"):
        squad.load_squad_file(str(tmp_path / "nope.json"), strict=True)


def _broken():
    """The hand-written set with four bad questions, one of each kind."""
    data = _load()
    qas = data["data"][0]["paragraphs"][0]["qas"]
    qas[0]["answers"][0]["answer_start"] += 1           # h-start: offset off by one
    del qas[1]["answers"]                                # h-middle: no answers
    qas[2]["question"] = ""                              # h-end: empty question
    qas[3]["answers"][0]["answer_start"] = 10 ** 6       # h-fire: outside the context
    return data


def test_bad_questions_are_errors_naming_the_id_when_strict(tmp_path):
    path = _write(tmp_path, _broken())
    with pytest.raises(TrainerError) as e:
        squad.load_squad_file(path, strict=True)
    message = str(e.value)
    assert "question 'h-start'" in message and "does not match its text '1642'" in message
    assert "\n" not in message


def test_bad_training_questions_are_skipped_and_counted(tmp_path):
    result = squad.load_squad_file(_write(tmp_path, _broken()), strict=False)
    assert [qid for qid, _ in result.skipped] == ["h-start", "h-middle", "h-end", "h-fire"]
    reasons = dict(result.skipped)
    assert "does not match" in reasons["h-start"]
    assert "no answers" in reasons["h-middle"]
    assert "no question" in reasons["h-end"]
    assert "outside the context" in reasons["h-fire"]
    assert len(result.examples) == 6  # the good ones, untouched
    assert {e.qid for e in result.examples}.isdisjoint(reasons)
    assert "skipped 4 bad example(s)" in result.skipped_line()


def test_missing_or_duplicate_ids(tmp_path):
    data = _load()
    del data["data"][1]["paragraphs"][1]["qas"][0]["id"]
    with pytest.raises(TrainerError, match=r"article 1 .*paragraph 1 question 0 has no 'id'"):
        squad.load_squad_file(_write(tmp_path, data), strict=False)
    data = _load()
    data["data"][1]["paragraphs"][1]["qas"][0]["id"] = "h-start"
    with pytest.raises(TrainerError, match="'h-start' occurs twice"):
        squad.load_squad_file(_write(tmp_path, data), strict=False)


def test_round_trip_through_the_writer():
    result = squad.load_squad_file(HANDWRITTEN, strict=True)
    again = squad.parse_squad(squad.to_squad_json(result.examples, "1.1"), "again", strict=True)
    assert again.examples == result.examples


@pytest.fixture(scope="module")
def generated():
    return cloze.generated_sets(max_train=300, max_dev=100, per_paragraph=3,
                                max_context_chars=400)


def test_generated_task_is_labelled_valid_and_split_by_article(generated):
    train_json, dev_json = generated
    for obj in generated:
        assert obj["version"] == cloze.GENERATED_VERSION and "NOT SQuAD" in obj["version"]
        assert all(a["title"].startswith("generated-cloze-doc") for a in obj["data"])
    train = squad.parse_squad(train_json, "train", strict=True)  # every answer_start matches
    dev = squad.parse_squad(dev_json, "dev", strict=True)
    assert len(train.examples) == 300 and len(dev.examples) == 100
    assert not {e.title for e in train.examples} & {e.title for e in dev.examples}
    for e in train.examples + dev.examples:
        assert len(e.context) <= 400
        assert cloze.BLANK in e.question
        answer = e.answers[0]
        # The question is the context's sentence with the answer blanked out.
        before, after = e.question.split(cloze.BLANK, 1)
        assert e.context[answer.start - len(before):answer.start] == before
        assert e.context[answer.start + len(answer.text):].startswith(after)


def test_generated_questions_come_from_held_out_articles(generated):
    from trainers.common.text import corpus as corpus_lib

    train_docs, held = corpus_lib.split_documents(corpus_lib.load_corpus("wiki"), 0.1, seed=0)
    pretraining_text = "\n".join(p for d in train_docs for p in d)
    held_text = "\n".join(p for d in held for p in d)
    for obj in generated:
        for e in squad.parse_squad(obj, "g", strict=True).examples[:50]:
            assert e.context in held_text and e.context not in pretraining_text
