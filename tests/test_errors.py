"""The error table is the public contract: codes are unique, stable and documented."""

from pathlib import Path

from gru.errors import Code, GruError, markdown_table

README = Path(__file__).resolve().parents[1] / "README.md"


def test_codes_are_unique_and_socket_codes_are_negative():
    values = [int(c) for c in Code]
    assert len(values) == len(set(values))
    for code in Code:
        if code.where == "http":
            assert 400 <= int(code) <= 599
        elif code is not Code.OK:
            assert int(code) < 0


def test_the_original_documents_invalid_type_code_is_minus_two():
    assert int(Code.BAD_MSG_TYPE) == -2


def test_error_result_has_the_contract_shape():
    assert GruError(Code.TARGET_OFFLINE).as_result() == {"success": False, "errorCode": -12,
                                                         "msg": "target user is offline"}
    assert GruError(Code.BAD_FIELD, "auth: missing field id").as_result()["msg"] == "auth: missing field id"


def test_readme_error_table_matches_the_code():
    assert markdown_table() in README.read_text(encoding="utf-8"), "run `make docs-errors`; paste it into README.md"
