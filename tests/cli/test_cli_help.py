"""`python main.py help`, --help and the language of the command line: what a newcomer
reads before running anything."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import main
from cli.errors import CliError, describe, run_guarded
from cli.parser import build_parser
from core.errors import StoreUnavailable
from core.settings import Settings

REPO = Path(__file__).resolve().parents[2]
PUBLIC = ("serve", "chat", "outbox", "forget", "migrate", "doctor", "help")
# Words that give Portuguese away in a help text (the bot's words to leads live in prompts/).
PORTUGUESE = re.compile(r"\b(conversar|contato|padrão|verificar|integração|mostrar|começar|apaga)\w*", re.I)


def test_help_command_prints_what_dash_dash_help_prints(capsys: pytest.CaptureFixture[str]) -> None:
    assert main.main(["help"]) == 0
    via_command = capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        main.main(["--help"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out == via_command


def test_the_process_help_command_exits_0(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "main.py"), "help"],
        check=False,
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0 and result.stderr == ""
    assert "usage: python main.py" in result.stdout


@pytest.mark.parametrize("command", PUBLIC)
def test_help_of_one_command_is_that_commands_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main.main(["help", command]) == 0
    assert capsys.readouterr().out.startswith(f"usage: python main.py {command}")


def test_help_lists_every_public_command_and_hides_the_worker(capsys: pytest.CaptureFixture[str]) -> None:
    main.main(["help"])
    text = capsys.readouterr().out
    for command in PUBLIC:
        assert re.search(rf"^\s+{command}\s+\S", text, flags=re.M), command
    assert "worker" not in text and "SUPPRESS" not in text


def test_the_worker_is_still_accepted_by_the_process_that_starts_it() -> None:
    args = build_parser().parse_args(["worker", "--port", "9001", "--parent", "12"])
    assert (args.command, args.port, args.parent) == ("worker", 9001, 12)


def test_every_help_text_is_english(capsys: pytest.CaptureFixture[str]) -> None:
    texts = []
    for command in (None, *PUBLIC):
        main.main(["help"] if command is None else ["help", command])
        texts.append(capsys.readouterr().out)
    assert not PORTUGUESE.findall("\n".join(texts))


def test_debug_is_accepted_before_or_after_the_command() -> None:
    parser = build_parser()
    assert parser.parse_args(["--debug", "doctor"]).debug
    assert parser.parse_args(["doctor", "--debug"]).debug
    assert not parser.parse_args(["doctor"]).debug


def test_outbox_kind_takes_every_kind_the_queue_holds() -> None:
    from core.outbox import PAYLOADS

    parser = build_parser()
    for kind in ("send_text", "piperun_sync", "meta_capi", "lead_erasure"):
        assert kind in PAYLOADS
        assert parser.parse_args(["outbox", "list", "--kind", kind]).kind == kind


def test_forget_channel_is_case_insensitive() -> None:
    assert build_parser().parse_args(["forget", "5511999999999", "--channel", "ZAPI"]).channel == "zapi"


def test_a_failure_line_is_scrubbed_of_configured_secrets(capsys: pytest.CaptureFixture[str]) -> None:
    def boom() -> int:
        raise StoreUnavailable("supabase at https://x.supabase.co?apikey=tok-123456 unreachable")

    assert run_guarded(boom, debug=False, secrets=lambda: ["tok-123456"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "tok-123456" not in err and "[REDACTED]" in err


def test_a_failure_with_broken_settings_still_prints_its_line(capsys: pytest.CaptureFixture[str]) -> None:
    def settings_broken() -> list[str]:
        raise ValueError("cannot read settings")

    assert run_guarded(lambda: 1 // 0, debug=False, secrets=settings_broken) == 1
    assert capsys.readouterr().err.startswith("error: unexpected error (ZeroDivisionError")


def test_a_broken_prompt_file_says_which_file(tmp_path: Path) -> None:
    from agent.prompts import PromptError, load_prompt_bundle

    with pytest.raises(PromptError) as exc_info:
        load_prompt_bundle(tmp_path)
    line, code = describe(exc_info.value)
    assert code == 1
    assert line.startswith("configuration problem: system prompt not found:") and str(tmp_path) in line


def test_a_command_worded_failure_keeps_its_code() -> None:
    assert describe(CliError("say which", 2)) == ("say which", 2)


def test_settings_errors_keep_values_out(tmp_path: Path) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError) as exc_info:
        Settings(_env_file=None, sqlite_path=tmp_path / "x", port="eighty")
    line, _ = describe(exc_info.value)
    assert "PORT" in line and "eighty" not in line
