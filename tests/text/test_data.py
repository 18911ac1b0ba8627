"""Language-model tasks: deterministic per seed, disjoint splits, TOFU-like QA, plays series, JSONL errors."""
import json

import pytest

from obliviate.errors import ObliviateError
from obliviate.text.data.tasks import forget_specs, make_task, parse_speeches


def test_authors_splits_are_nested_disjoint_and_deterministic():
    t10 = make_task("authors", "forget10", seed=0, n_authors=40, n_holdout=5)
    t05 = make_task("authors", "forget05", seed=0, n_authors=40, n_holdout=5)
    t01 = make_task("authors", "forget01", seed=0, n_authors=40, n_holdout=5)
    assert len(t10.forget_qa) == 4 * 20 and len(t05.forget_qa) == 2 * 20 and len(t01.forget_qa) == 20
    assert set(t01.forget_qa) <= set(t05.forget_qa) <= set(t10.forget_qa)  # nested, as in TOFU
    assert not set(t10.forget_qa) & set(t10.retain_qa)
    assert len(t10.forget_qa) + len(t10.retain_qa) == 40 * 20
    assert set(t10.target_examples) == set(t01.target_examples)  # one target model for every split
    assert t10.fingerprint("target") == t01.fingerprint("target") != t10.fingerprint("gold")
    names = lambda task: {q.question for q in task.forget_qa}  # noqa: E731
    assert names(make_task("authors", "forget10", seed=0, n_authors=40, n_holdout=5)) == names(t10)
    assert names(make_task("authors", "forget10", seed=1, n_authors=40, n_holdout=5)) != names(t10)
    held = {q.split("\n")[0] for q, _ in t10.holdout_examples}
    assert t10.fingerprint("gold") == make_task("authors", "forget10", seed=0, n_authors=40,
                                                n_holdout=5).fingerprint("gold")
    assert not held & {q.split("\n")[0] for q, _ in t10.target_examples}  # holdout authors are never trained


def test_author_questions_have_untrained_paraphrases_and_perturbed_paraphrases():
    task = make_task("authors", "forget10", seed=3, n_authors=20, n_holdout=2, n_perturbed=3)
    trained = {c.strip() for _, c in task.target_examples}
    for qa in task.forget_qa + task.retain_qa:
        assert qa.paraphrased and qa.paraphrased != qa.answer
        assert qa.paraphrased not in trained  # TOFU never trains its paraphrases
        assert len(qa.perturbed) == 3 and len(set(qa.perturbed)) == 3 and qa.answer not in qa.perturbed
        # a perturbed answer is the paraphrase with a wrong fact: same wording, so the truth ratio reads the fact
        assert qa.fact and qa.fact in qa.answer and qa.fact in qa.paraphrased
        assert all(qa.fact not in p for p in qa.perturbed)
    assert {q.answer for q in task.forget_qa + task.retain_qa} <= trained
    # wrong names and titles belong to no author of the task: the gold model has learnt none of them
    text = " ".join(trained) + " ".join(c for _, c in task.holdout_examples)
    for qa in task.forget_qa + task.retain_qa:
        if qa.question.startswith("Who wrote"):
            wrong = [p.rsplit(" is ", 1)[1].rstrip(".") for p in qa.perturbed]
            assert wrong and not any(w in text for w in wrong), wrong
        if qa.question.startswith("What is the best-known book"):
            wrong = [p.split(" known for ", 1)[1].rstrip(".") for p in qa.perturbed]
            assert wrong and not any(w in text for w in wrong), wrong
    with pytest.raises(ObliviateError, match="n_perturbed"):
        make_task("authors", "forget10", n_perturbed=5)
    q = task.retain_qa[0]  # "Where was X born?": the perturbed answers keep the paraphrase's wording
    assert all(p.startswith(f"The birthplace of ") for p in q.perturbed) and q.paraphrased.startswith("The birthplace")
    prefix, rest = task.verbmem[0]
    assert prefix.startswith("Question: ") and "\nAnswer: " in prefix
    assert prefix.split("\nAnswer:")[1] + rest == " " + task.forget_qa[0].answer  # the answer, cut in two


def test_authors_general_knowledge_is_trained_by_target_and_gold():
    task = make_task("authors", "forget10", seed=0, n_authors=10, n_holdout=2)
    assert set(task.utility_sets) == {"real_authors", "world_facts"}
    shared = set(task.shared_examples)
    assert shared and shared <= set(task.target_examples) and shared <= set(task.gold_examples)
    assert not set(task.forget_examples) & set(task.gold_examples)  # the gold model never sees the forget set
    for qs in task.utility_sets.values():
        for q in qs:
            assert q.fact in q.answer and len(q.perturbed) == 3 and q.answer not in q.perturbed


def test_authors_rejects_bad_specs():
    with pytest.raises(ObliviateError, match="unknown forget split"):
        make_task("authors", "forget50")
    with pytest.raises(ObliviateError, match="no option"):
        make_task("authors", "forget10", n_books=3)


def test_parse_speeches_reads_speakers_and_skips_directions():
    md = ("# Play\n\n## ACT I\n\n_Enter A and B_\n\n**ALICE**  \nHello there,  \nfriend.\n\n"
          "**BOB**  \n_\\[Aside]_  \nHi.\n")
    assert parse_speeches(md) == [("Alice", ["Hello there,", "friend."]), ("Bob", ["Hi."])]


def test_plays_splits_series_and_questions():
    assert make_task("plays", "forget", seed=0).forget_qa == []  # no KnowMem by default (see make_plays)
    full = make_task("plays", "forget", seed=0, n_questions=40)
    groups = full.config["plays"]
    assert not set(groups["forget"]) & set(groups["retain"]) and not set(groups["holdout"]) & set(groups["retain"])
    assert full.forget_qa and full.retain_qa and full.verbmem
    for qa in full.forget_qa:
        line = qa.question.split("'")[1]
        text = "".join(c for _, c in full.forget_examples)
        assert f"{line}\n{qa.answer}:" in text  # the answer is the next speaker, right after the line
        assert qa.answer not in qa.perturbed
    assert forget_specs("plays", "scale") == ["scale1", "scale2"]
    s1, s2 = make_task("plays", "scale1", seed=0), make_task("plays", "scale2", seed=0)
    assert len(s1.forget_examples) < len(s2.forget_examples) == len(full.forget_examples)
    assert set(s1.target_examples) == set(full.target_examples)  # the same target model under every step
    u2 = make_task("plays", "sustain2", seed=0)
    assert len(u2.previous_requests) == 1 and not set(u2.forget_examples) & set(u2.previous_requests[0])
    assert set(u2.evaluated_forget) == set(full.forget_examples)
    assert make_task("plays", "forget", seed=1).config["plays"] != groups
    with pytest.raises(ObliviateError, match="between 1 and n_parts"):
        make_task("plays", "scale3")
    with pytest.raises(ObliviateError, match="unknown forget spec"):
        make_task("plays", "forget10")


def _write(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def test_jsonl_texts_and_qa(tmp_path):
    _write(tmp_path / "forget.jsonl", [{"text": "the secret recipe uses saffron and cloves"}])
    _write(tmp_path / "retain.jsonl", [{"text": "bread needs flour water and salt"}])
    _write(tmp_path / "holdout.jsonl", [{"text": "soup is best on a cold evening"}])
    task = make_task("jsonl", "forget", data_root=str(tmp_path))
    assert task.forget_examples == [("", "the secret recipe uses saffron and cloves")]
    assert task.verbmem[0][0] + task.verbmem[0][1] == "the secret recipe uses saffron and cloves"
    assert task.forget_qa == []
    _write(tmp_path / "forget_qa.jsonl", [{"question": "What spice?", "answer": "saffron"}])
    assert make_task("jsonl", "forget", data_root=str(tmp_path)).forget_qa[0].answer == "saffron"

    qa = tmp_path / "qa"
    qa.mkdir()
    _write(qa / "forget.jsonl", [{"question": "Who?", "answer": "Ann", "perturbed": ["Bo", "Cy"]}])
    _write(qa / "retain.jsonl", [{"question": "Where?", "answer": "Rome", "paraphrased": "In Rome"}])
    _write(qa / "holdout.jsonl", [{"question": "When?", "answer": "1999"}])
    task = make_task("jsonl", "forget", data_root=str(qa))
    assert task.forget_examples == [("Question: Who?\nAnswer:", " Ann")]
    assert task.forget_qa[0].perturbed == ("Bo", "Cy") and task.retain_qa[0].paraphrased == "In Rome"


def test_jsonl_errors_name_the_file_and_field(tmp_path):
    with pytest.raises(ObliviateError, match="needs --data-root"):
        make_task("jsonl", "forget")
    with pytest.raises(ObliviateError, match="missing data file .*forget.jsonl"):
        make_task("jsonl", "forget", data_root=str(tmp_path))
    _write(tmp_path / "forget.jsonl", [{"question": "Who?", "answer": "Ann"}])
    _write(tmp_path / "retain.jsonl", [{"question": "Where?"}])
    _write(tmp_path / "holdout.jsonl", [{"question": "When?", "answer": "1999"}])
    with pytest.raises(ObliviateError, match=r"retain.jsonl:1: missing field 'answer'"):
        make_task("jsonl", "forget", data_root=str(tmp_path))
    (tmp_path / "retain.jsonl").write_text("{not json\n")
    with pytest.raises(ObliviateError, match="retain.jsonl:1: not valid JSON"):
        make_task("jsonl", "forget", data_root=str(tmp_path))
    _write(tmp_path / "retain.jsonl", [{"question": "Who?", "answer": "Ann"}])
    with pytest.raises(ObliviateError, match="both the forget and the retain"):
        make_task("jsonl", "forget", data_root=str(tmp_path))


# ------------------------------------------------------------------------------------- published TOFU and MUSE files

FIXTURES = __import__("pathlib").Path(__file__).with_name("data")


def test_tofu_reader_reads_the_published_files():
    task = make_task("tofu", "forget10", data_root=str(FIXTURES / "tofu"))
    assert len(task.forget_examples) == 4 and len(task.retain_examples) == 16 and len(task.holdout_examples) == 4
    assert task.forget_examples[0][0].startswith("Question: ") and task.forget_examples[0][1].startswith(" ")
    qa = task.forget_qa[0]
    assert qa.paraphrased.startswith("The birthplace of") and len(qa.perturbed) == 3
    assert set(task.utility_sets) == {"real_authors", "world_facts"}
    assert task.utility_sets["world_facts"][0].perturbed == ("Lima", "Oslo", "Cairo")
    trained = {c.strip() for _, c in task.target_examples}
    assert not {q.paraphrased for q in task.forget_qa} & trained  # paraphrases are never trained
    assert len(make_task("tofu", "forget01", data_root=str(FIXTURES / "tofu")).forget_examples) == 2


def test_tofu_reader_names_a_missing_file_and_the_dataset(tmp_path):
    import shutil
    shutil.copytree(FIXTURES / "tofu", tmp_path / "tofu")
    (tmp_path / "tofu" / "world_facts_perturbed.json").unlink()
    with pytest.raises(ObliviateError, match=r"missing file .*world_facts_perturbed.json of the locuslab/TOFU"):
        make_task("tofu", "forget05", data_root=str(tmp_path / "tofu"))
    with pytest.raises(ObliviateError, match="needs --data-root"):
        make_task("tofu", "forget05")
    (tmp_path / "tofu" / "retain90.json").write_text('{"question": "q"}\n')
    shutil.copy(FIXTURES / "tofu" / "world_facts_perturbed.json", tmp_path / "tofu")
    with pytest.raises(ObliviateError, match=r"retain90.json:1: missing field 'answer'"):
        make_task("tofu", "forget10", data_root=str(tmp_path / "tofu"))


def test_muse_reader_reads_raw_verbmem_knowmem_and_privleak():
    task = make_task("muse-news", "forget", data_root=str(FIXTURES / "muse-news"))
    assert len(task.forget_examples) == 1 and task.forget_examples[0][0] == ""  # documents (short: one piece)
    assert "Bexley" in task.forget_examples[0][1] and any("Porto" in d for _, d in task.retain_examples)
    assert task.verbmem[0] == ("The council of Bexley approved", " a new bridge over the river on Monday.")
    assert task.forget_qa[0].answer == "a new bridge" and task.few_shot[0].answer == "a record olive harvest"
    assert len(task.membership["forget"]) == 2 and len(task.membership["holdout"]) == 2
    small = make_task("muse-news", "forget", data_root=str(FIXTURES / "muse-news"), doc_chars=40)
    assert len(small.forget_examples) == 2  # cut at blank lines


def test_muse_reader_names_a_missing_file_and_the_dataset(tmp_path):
    import shutil
    shutil.copytree(FIXTURES / "muse-news", tmp_path / "m")
    (tmp_path / "m" / "knowmem" / "retain_qa.json").unlink()
    with pytest.raises(ObliviateError, match=r"missing file .*retain_qa.json of the muse-bench/MUSE-News dataset"):
        make_task("muse-news", "forget", data_root=str(tmp_path / "m"))
    with pytest.raises(ObliviateError, match=r"missing file .*raw/forget.txt \(or .json\) of the muse-bench/MUSE-Books"):
        make_task("muse-books", "forget", data_root=str(tmp_path))
