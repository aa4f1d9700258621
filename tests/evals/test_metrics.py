"""Task metrics on generated text."""

from __future__ import annotations

import pytest

from evals.metrics import exact_match, field_f1, parse_json_object, rouge_l, score_items

REF = '{"name": "Ana Silva", "age": 30, "city": "Porto", "occupation": "nurse"}'


def test_field_f1_counts_key_value_pairs() -> None:
    assert field_f1(REF, REF) == 1.0
    assert (
        field_f1(
            'Sure! ```json\n{"name": "ana  silva", "age": 30, "city": "Porto", "occupation": "nurse"}```',
            REF,
        )
        == 1.0
    )
    half = '{"name": "Ana Silva", "age": 31, "city": "Lisbon", "occupation": "nurse"}'
    assert field_f1(half, REF) == pytest.approx(0.5)
    extra = '{"name": "Ana Silva", "age": 30, "city": "Porto", "occupation": "nurse", "email": "x"}'
    assert field_f1(extra, REF) == pytest.approx(2 * 0.8 * 1.0 / 1.8)
    assert field_f1("no json here", REF) == 0.0
    assert field_f1('{"age": "30"}', REF) == 0.0  # "30" is not 30
    with pytest.raises(ValueError, match="JSON-object references"):
        field_f1("x", "not json")


def test_exact_match_normalises_whitespace_and_json() -> None:
    assert exact_match("  Paris \n", "Paris") == 1.0
    assert exact_match("Paris.", "Paris") == 0.0
    assert (
        exact_match('{"age": 30, "name": "Ana Silva", "city": "Porto", "occupation": "nurse"}', REF)
        == 1.0
    )
    assert exact_match('{"name": "Ana Silva"}', REF) == 0.0


def test_rouge_l_and_parse() -> None:
    assert rouge_l("the cat sat on the mat", "the cat sat on the mat") == 1.0
    assert 0.0 < rouge_l("the cat sat", "the cat sat on the mat") < 1.0
    assert rouge_l("dogs bark", "the cat sat") == 0.0
    assert parse_json_object('text {"a": {"b": 1}} more') == {"a": {"b": 1}}
    assert parse_json_object('{broken {"a": 1}') == {"a": 1}
    assert parse_json_object("[1, 2]") is None


def test_score_items_per_item() -> None:
    assert score_items(["a", "b"], ["a", "c"], "exact_match") == [1.0, 0.0]
    with pytest.raises(ValueError, match="differ in length"):
        score_items(["a"], ["a", "b"], "exact_match")
