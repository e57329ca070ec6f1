"""Where the project lives on disk: the folder prompts/ and supabase/ are read from."""

from __future__ import annotations

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
