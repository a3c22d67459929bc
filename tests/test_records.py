from distillpipe.records import content_hash, ensure_id, new_record, record_id, user_prompt


def test_the_same_instruction_always_gets_the_same_id():
    assert record_id("Name three colours.") == record_id("Name three colours.")
    assert len(record_id("x")) == 16


def test_ids_ignore_whitespace_differences_but_not_words():
    assert record_id("Name  three\ncolours. ") == record_id("Name three colours.")
    assert record_id("Name three colours.") != record_id("Name four colours.")


def test_the_input_is_part_of_the_id():
    assert record_id("Translate.", "bonjour") != record_id("Translate.", "hola")
    assert record_id("Translate.", "") == record_id("Translate.")


def test_new_record_carries_lineage_and_only_the_fields_given():
    record = new_record("Sum 2 and 3.", origin={"stage": "seed"})
    assert record == {"id": record_id("Sum 2 and 3."), "instruction": "Sum 2 and 3.",
                      "origin": {"stage": "seed"}}  # fmt: skip


def test_ensure_id_keeps_an_existing_id():
    assert ensure_id({"id": "mine", "instruction": "x"})["id"] == "mine"
    assert ensure_id({"instruction": "x"})["id"] == record_id("x")


def test_content_hash_is_independent_of_key_order_and_prefixed():
    assert content_hash({"a": 1, "b": [1, 2]}) == content_hash({"b": [1, 2], "a": 1})
    assert content_hash({"a": 1}).startswith("sha256:")


def test_user_prompt_joins_instruction_and_input():
    assert user_prompt({"instruction": "Translate.", "input": "hola"}) == "Translate.\n\nhola"
    assert user_prompt({"instruction": "Translate."}) == "Translate."
