"""Rules the guard node enforces on every reply, whatever the model wrote."""

from __future__ import annotations

from agent.guardrails import limit_questions


def test_a_reply_with_three_questions_keeps_only_the_first_two() -> None:
    reply = "Legal! Qual o seu nome? E de qual cidade você fala? Quantos hambúrgueres por dia?"
    assert limit_questions(reply) == "Legal! Qual o seu nome? E de qual cidade você fala?"


def test_two_questions_or_fewer_are_left_alone() -> None:
    for reply in ("Oi! Tudo bem?", "Qual o seu nome? E a cidade?", "Perfeito, anotado.", ""):
        assert limit_questions(reply) == reply


def test_text_after_the_second_question_is_kept_when_no_third_question_follows() -> None:
    reply = "Qual o seu nome? E a cidade? Assim já encaminho."
    assert limit_questions(reply) == reply


def test_voice_notes_are_named_for_whisper_by_type_or_by_their_bytes() -> None:
    from agent.graph import audio_file_name

    assert audio_file_name("audio/ogg; codecs=opus", b"") == ("audio.ogg", "audio/ogg")
    assert audio_file_name(None, b"\x00\x00\x00\x1cftypM4A ") == ("audio.mp4", "audio/mp4")  # Instagram
    assert audio_file_name(None, b"OggS\x00\x02") == ("audio.ogg", "audio/ogg")
    assert audio_file_name("audio/mpeg", b"") == ("audio.mp3", "audio/mpeg")


def test_the_agent_s_prompt_bounds_default_to_what_the_settings_default_to() -> None:
    """The agent does not read Settings (issue 14): its two defaults are its own, and must
    stay the ones an operator reads in .env.example."""
    from agent.graph import DEFAULT_LEAD_MESSAGE_MAX_CHARS, DEFAULT_PROMPT_MAX_TOKENS
    from core.settings import Settings

    assert Settings.model_fields["lead_message_max_chars"].default == DEFAULT_LEAD_MESSAGE_MAX_CHARS
    assert Settings.model_fields["prompt_max_tokens"].default == DEFAULT_PROMPT_MAX_TOKENS
