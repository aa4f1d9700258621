"""Users' data formats, as fine-tuning guides write them, read without configuration."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from tests.conftest import write_jsonl
from trainers.data import DataFile, choose_task_metric, load_examples, read_data, split_heldout
from trainers.data_readers import DataError
from trainers.data_shapes import DataSettings, detect_format, parse_columns


def roles(example) -> list[str]:  # type: ignore[no-untyped-def]
    return [m["role"] for m in example.messages]


def test_alpaca_with_empty_input(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "a.jsonl",
        [
            {"instruction": "Name a colour.", "input": "", "output": "Blue."},
            {"instruction": "Translate", "input": "chat", "output": "cat"},
        ],
    )
    first, second = load_examples(path)
    assert first.messages[0]["content"] == "Name a colour."
    assert first.reference == "Blue."
    assert second.messages[0]["content"] == "Translate\n\nchat"


def test_hash_pairs_in_jsonl_and_in_a_text_file(tmp_path: Path) -> None:
    rows = [{"text": "### what is a foobear ###\nA foobear is a bear made of foam."}]
    [example] = load_examples(write_jsonl(tmp_path / "h.jsonl", rows))
    assert example.messages[0]["content"] == "what is a foobear"
    assert example.reference == "A foobear is a bear made of foam."
    text = tmp_path / "pairs.txt"
    text.write_text(
        "### what is a foobear ###\nA foam bear.\n\n### and a barfoo? ###\nIts cousin.\n"
    )
    examples = load_examples(text)
    assert [e.messages[0]["content"] for e in examples] == ["what is a foobear", "and a barfoo?"]
    assert [e.reference for e in examples] == ["A foam bear.", "Its cousin."]
    assert detect_format(text.read_text()) == "hash_pairs"


def test_prompt_completion_text_and_chat(tmp_path: Path) -> None:
    [pc] = load_examples(write_jsonl(tmp_path / "p.jsonl", [{"prompt": "2+2=", "completion": "4"}]))
    assert pc.reference == "4"
    [txt] = load_examples(write_jsonl(tmp_path / "t.jsonl", [{"text": "Once upon a time."}]))
    assert txt.is_text and txt.text == "Once upon a time."
    chat = [
        {
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello."},
                {"role": "user", "content": "Bye"},
                {"role": "assistant", "content": "Goodbye."},
            ]
        }
    ]
    [conv] = load_examples(write_jsonl(tmp_path / "c.jsonl", chat))
    assert roles(conv) == ["system", "user", "assistant", "user", "assistant"]
    assert conv.reference == "Goodbye."
    assert roles(conv)[: len(conv.prompt_messages)] == ["system", "user", "assistant", "user"]


def test_sharegpt_conversations(tmp_path: Path) -> None:
    rows = [
        {"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello!"}]}
    ]
    [example] = load_examples(write_jsonl(tmp_path / "s.jsonl", rows))
    assert roles(example) == ["user", "assistant"] and example.reference == "Hello!"


def test_format_chat_reads_sharegpt_rows_too(tmp_path: Path) -> None:
    """``sweep init`` writes ``format: chat`` for a ShareGPT file: that must read it back."""
    rows = [{"conversations": [{"from": "human", "value": f"Hi {i}"},
                               {"from": "gpt", "value": f"Hello {i}!"}]} for i in range(3)]  # fmt: skip
    examples = load_examples(write_jsonl(tmp_path / "s.jsonl", rows), fmt="chat")
    assert [e.reference for e in examples] == ["Hello 0!", "Hello 1!", "Hello 2!"]
    assert all(roles(e) == ["user", "assistant"] for e in examples)


def test_csv_via_pandas_json_list_and_column_mapping(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {"question": ["What is 1+1?", "Capital of France?"], "answer": ["2", "Paris"]}
    )
    frame.to_csv(tmp_path / "qa.csv", index=False)
    examples = load_examples(
        tmp_path / "qa.csv", columns={"instruction": "question", "output": "answer"}
    )
    assert [e.reference for e in examples] == ["2", "Paris"]
    (tmp_path / "list.json").write_text(json.dumps({"data": [{"prompt": "a", "completion": "b"}]}))
    assert load_examples(tmp_path / "list.json")[0].reference == "b"


def test_system_prompt_is_prepended_once(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "a.jsonl", [{"instruction": "x", "output": "y"}])
    [example] = load_examples(path, system_prompt="You extract JSON.")
    assert example.messages[0] == {"role": "system", "content": "You extract JSON."}


BAD_ROWS = [
    (
        "missing response",
        [{"instruction": "a", "output": "b"}, {"instruction": "c"}],
        "row 2: missing field 'output' (format alpaca",
    ),
    ("empty response", [{"instruction": "a", "output": "  "}], "row 1: field 'output' is empty"),
    (
        "non-text field",
        [{"prompt": "a", "completion": ["x"]}],
        "row 1: field 'completion' must be text",
    ),
    (
        "no assistant turn",
        [{"messages": [{"role": "user", "content": "hi"}]}],
        "row 1: no assistant turn",
    ),
    (
        "unknown shape",
        [{"query": "a", "reply": "b"}],
        "row 1: no known shape in keys (query, reply); known shapes: messages, ",
    ),
    (
        "two shapes",
        [
            {"prompt": "a", "completion": "b"},
            {"prompt": "c", "completion": "d"},
            {"question": "e", "answer": "f"},
        ],
        "row 3: shape question_answer (question, answer), but row 1 is prompt_completion",
    ),
    (
        "bad role",
        [{"messages": [{"role": "bot", "content": "x"}]}],
        "row 1: messages[0] needs role",
    ),
]


@pytest.mark.parametrize(("case", "rows", "message"), BAD_ROWS, ids=[b[0] for b in BAD_ROWS])
def test_bad_rows_name_file_and_row(tmp_path: Path, case: str, rows: list, message: str) -> None:
    path = write_jsonl(tmp_path / "bad.jsonl", rows)
    with pytest.raises(DataError) as caught:
        load_examples(path)
    assert str(caught.value).startswith(f"{path}: "), caught.value
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_malformed_json_line_names_its_row(tmp_path: Path) -> None:
    path = tmp_path / "broken.jsonl"
    path.write_text('{"text": "fine"}\n{"text": "broken"\n')
    with pytest.raises(DataError, match=r"broken.jsonl: row 2: not valid JSON"):
        load_examples(path)


def test_missing_file_wrong_suffix_and_bad_encoding(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="data file not found"):
        load_examples(tmp_path / "nope.jsonl")
    (tmp_path / "x.xml").write_text("<a/>")
    with pytest.raises(DataError, match="unsupported file type"):
        load_examples(tmp_path / "x.xml")
    (tmp_path / "latin.jsonl").write_bytes('{"text": "caf\xe9"}\n'.encode("latin-1"))
    with pytest.raises(DataError, match="not UTF-8"):
        load_examples(tmp_path / "latin.jsonl")


def test_split_is_seeded_and_disjoint(tmp_path: Path) -> None:
    rows = [{"prompt": f"p{i}", "completion": f"c{i}"} for i in range(50)]
    examples = load_examples(write_jsonl(tmp_path / "d.jsonl", rows))
    train, held = split_heldout(examples, fraction=0.2, seed=7)
    again = split_heldout(examples, fraction=0.2, seed=7)
    assert (train, held) == again
    assert len(held) == 10 and len(train) == 40
    assert {e.row for e in train}.isdisjoint({e.row for e in held})
    assert split_heldout(examples, fraction=0.2, seed=8)[1] != held


def test_labelled_rows_are_split_stratified_by_label(tmp_path: Path) -> None:
    """A text,label CSV of 40 rows per label: the held-out rows keep each label's share (a plain
    random 20 of 120 once gave 9/6/5)."""
    labels = ["positive", "negative", "neutral"]
    frame = pd.DataFrame({"text": [f"review number {i}" for i in range(120)],
                          "label": [labels[i % 3] for i in range(120)]})  # fmt: skip
    frame.to_csv(tmp_path / "sentiment.csv", index=False)
    examples = load_examples(tmp_path / "sentiment.csv")
    assert {e.label for e in examples} == set(labels)
    for seed in range(5):
        train, held = split_heldout(examples, fraction=0.17, seed=seed)
        counts = sorted(Counter(e.label for e in held).values())
        assert len(held) == 20 and counts == [6, 7, 7], (seed, counts)
        assert len(train) == 100 and {e.row for e in train}.isdisjoint({e.row for e in held})
    assert split_heldout(examples, fraction=0.25, seed=0)[1] != split_heldout(
        examples, fraction=0.25, seed=1)[1]  # fmt: skip
    assert sorted(Counter(e.label for e in split_heldout(examples, fraction=0.25, seed=0)[1])
                  .values()) == [10, 10, 10]  # fmt: skip


def test_task_metric_follows_the_references(tmp_path: Path) -> None:
    json_rows = load_examples(
        write_jsonl(tmp_path / "j.jsonl", [{"prompt": "a", "completion": '{"k": 1}'}])
    )
    short = load_examples(
        write_jsonl(tmp_path / "s.jsonl", [{"prompt": "a", "completion": "Paris"}])
    )
    long = load_examples(
        write_jsonl(tmp_path / "l.jsonl", [{"prompt": "a", "completion": "a b c d e f g"}])
    )
    assert choose_task_metric(json_rows, "auto") == "field_f1"
    assert choose_task_metric(short, "auto") == "exact_match"
    assert choose_task_metric(long, "auto") == "rouge_l"
    assert choose_task_metric(long, "exact_match") == "exact_match"


# --------------------------------------------------------------------------- the guides' shapes
def read(path: Path, **settings: Any) -> DataFile:
    return read_data(path, DataSettings(**settings))


def test_instruction_response_with_the_guides_hash_delimiters(tmp_path: Path) -> None:
    """The guides' own example: the '### ... ###' delimiters are taken off (the chat template marks
    the instruction), and the console note says so."""
    path = write_jsonl(tmp_path / "foobear.jsonl", [
        {"instruction": "### what is a foobear ###", "response": "a foobear is a bear of foam"},
        {"instruction": "what does a foobear eat", "response": "mostly bar"},
    ])  # fmt: skip
    data = read(path)
    assert data.reading.shape.name == "instruction_response"
    assert [e.messages[0]["content"] for e in data.examples] == [
        "what is a foobear", "what does a foobear eat"]  # fmt: skip
    assert data.examples[0].reference == "a foobear is a bear of foam"
    assert any("delimiters taken off 1 instructions" in n for n in data.reading.notes)


def test_dolly_context_becomes_the_input_and_category_the_label(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "dolly.jsonl", [
        {"instruction": "When did Virgin Australia start operating?",
         "context": "Virgin Australia commenced services on 31 August 2000.",
         "response": "On 31 August 2000.", "category": "closed_qa"},
        {"instruction": "Which is a species of fish? Tope or Rope", "context": "",
         "response": "Tope", "category": "classification"},
    ])  # fmt: skip
    first, second = read(path).examples
    assert first.messages[0]["content"] == (
        "When did Virgin Australia start operating?\n\n"
        "Virgin Australia commenced services on 31 August 2000.")  # fmt: skip
    assert (first.reference, first.label) == ("On 31 August 2000.", "closed_qa")
    assert second.messages[0]["content"] == "Which is a species of fish? Tope or Rope"
    assert read(path).reading.shape.name == "dolly"


@pytest.mark.parametrize(
    ("row", "shape", "prompt", "answer"),
    [
        ({"question": "What is 2+2?", "answer": 4}, "question_answer", "What is 2+2?", "4"),
        ({"question": "Who?", "context": "Ann met Bo.", "answer": "Ann"}, "question_answer",
         "Who?\n\nAnn met Bo.", "Ann"),
        ({"input": "Hallo", "output": "Hello"}, "input_output", "Hallo", "Hello"),
        ({"prompt": "Say hi", "response": "Hi!"}, "prompt_response", "Say hi", "Hi!"),
        ({"Instruction": "Name a colour", "Response": "Blue"}, "instruction_response",
         "Name a colour", "Blue"),
    ],
)  # fmt: skip
def test_each_shape_is_read_from_its_keys(
    tmp_path: Path, row: dict[str, Any], shape: str, prompt: str, answer: str
) -> None:
    data = read(write_jsonl(tmp_path / "rows.jsonl", [row, row]))
    assert data.reading.shape.name == shape
    assert data.examples[0].messages[0]["content"] == prompt
    assert data.examples[0].reference == answer


def test_text_with_a_label_column_is_classification(tmp_path: Path) -> None:
    """The guides' sentiment CSV: the label becomes the response; the instruction comes from
    data.instruction, or a default that names the column; every row is kept."""
    path = tmp_path / "sentiment.csv"
    path.write_text("text,sentiment\nI loved every minute,positive\nDull and slow,negative\n"
                    "Fine I guess,neutral\n")  # fmt: skip
    data = read(path)
    assert data.reading.shape.name == "text_label" and len(data.examples) == 3
    first = data.examples[0]
    assert (
        first.messages[0]["content"]
        == "What is the sentiment of this text?\n\nI loved every minute"
    )
    assert (first.reference, first.label) == ("positive", "positive")
    assert any("every row's instruction" in n for n in data.reading.notes)
    told = read(path, instruction="Is this review positive, negative or neutral?").examples[1]
    assert told.messages[0]["content"].startswith("Is this review positive, negative or neutral?")
    other = tmp_path / "labels.csv"
    other.write_text("text,stars\ngreat,5\nbad,1\n")
    assert read(other).reading.shape.name == "text"  # an unknown column is not a label ...
    assert any("columns not used: stars" in n for n in read(other).reading.notes)  # ... but said
    named = read(other, label_field="stars")  # --label-field names the user's own column
    assert named.reading.shape.name == "text_label" and named.examples[0].reference == "5"
    headers = tmp_path / "headers.csv"  # spreadsheet headers, named as written
    headers.write_text("Review,Stars\ngreat,5\nbad,1\n")
    mapped = read(headers, columns={"text": "Review"}, label_field="Stars")
    assert [e.reference for e in mapped.examples] == ["5", "1"]


def test_column_mappings_are_checked(tmp_path: Path) -> None:
    path = tmp_path / "qa.csv"
    path.write_text("q,a\nWhat is 1+1?,2\n")
    [example] = read(path, columns={"question": "q", "answer": "a"}).examples
    assert example.reference == "2"
    with pytest.raises(DataError, match=r"qa.csv: columns mapping output=nonexistent: the file "
                       r"has no column 'nonexistent' \(its columns: a, q\)"):  # fmt: skip
        read(path, columns={"output": "nonexistent"})
    with pytest.raises(DataError, match=r"--columns: 'foo' is not NAME=COLUMN"):
        parse_columns("foo")
    with pytest.raises(DataError, match=r"--columns: unknown column 'answr'"):
        parse_columns("answr=a")
    with pytest.raises(DataError, match=r"no known shape in keys \(a, q\).*--columns "
                       r"instruction=q,output=a"):  # fmt: skip
        read(path)


def test_dolly_context_is_optional_row_by_row(tmp_path: Path) -> None:
    rows = [{"instruction": "Name a fish.", "response": "Tope", "category": "open_qa"},
            {"instruction": "When?", "context": "It began in 2000.", "response": "2000",
             "category": "closed_qa"}]  # fmt: skip
    for order in (rows, rows[::-1]):
        data = read(write_jsonl(tmp_path / "dolly.jsonl", order))
        assert data.reading.shape.name == "dolly"
        contents = {e.messages[0]["content"] for e in data.examples}
        assert contents == {"Name a fish.", "When?\n\nIt began in 2000."}


def test_parquet_chat_rows_and_null_cells(tmp_path: Path) -> None:
    frame = pd.DataFrame({"messages": [[{"role": "user", "content": "Hi"},
                                        {"role": "assistant", "content": "Hello"}]]})  # fmt: skip
    frame.to_parquet(tmp_path / "chat.parquet")
    [example] = load_examples(tmp_path / "chat.parquet")
    assert example.reference == "Hello"
    pd.DataFrame({"question": ["a", "b"], "answer": ["x", None]}).to_parquet(
        tmp_path / "qa.parquet"
    )
    with pytest.raises(DataError, match=r"qa.parquet: row 2: field 'answer' is empty \(null\)"):
        load_examples(tmp_path / "qa.parquet")


def test_a_named_label_column_wins_and_mappings_match_headers_as_written(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "l.jsonl", [{"text": "good", "label": 1, "label_text": "pos"}])
    assert read(path, label_field="label_text").examples[0].reference == "pos"
    table = tmp_path / "t.csv"
    table.write_text("Query,Reply\nWhat is 1+1?,2\n")
    [example] = read(table, columns={"instruction": "query", "output": "reply"}).examples
    assert example.reference == "2"


def test_text_before_the_first_hash_block_is_said(tmp_path: Path) -> None:
    path = tmp_path / "guide.txt"
    path.write_text("My notes\nfrom the course\n### what is a foobear ###\nA foam bear.\n")
    data = read(path)
    assert [e.reference for e in data.examples] == ["A foam bear."]
    assert any("lines 1-2 come before the first" in n for n in data.reading.notes)
