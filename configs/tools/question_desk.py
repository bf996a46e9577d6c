"""Tools that read their input from the task instead of from the model: the demo world's sums
and sorts, for a model too small to copy a number or word out of the question into a call.

The 2.7M-parameter demo model copies a whole sentence exactly but writes the first number or word
of a question into a `calculate("12 + 7")` call wrongly most of the time. These tools take no
arguments: `reset(row)` keeps the prompt, and the tool computes from it, so the model's part is
to pick the right tool and pass its answer on. An environment with state per rollout, as a game
or a user simulator has (`tools.env: configs/tools/question_desk.py:QuestionDesk`).
"""

from __future__ import annotations

import re


class QuestionDesk:
    def reset(self, row: dict) -> None:
        self.question = row["prompt"]
        return None

    def add_the_numbers(self) -> str:
        """Add the numbers in the user's question and return the sum."""
        numbers = [int(n) for n in re.findall(r"\d+", self.question)]
        if len(numbers) < 2:
            raise ValueError("the question holds fewer than two numbers")
        return str(sum(numbers))

    def sort_the_words(self) -> str:
        """Sort the comma-separated words of the user's question alphabetically."""
        listed = self.question.split("\n\n")[-1]
        words = [w.strip() for w in listed.split(",") if w.strip()]
        if len(words) < 2:
            raise ValueError("the question lists fewer than two words")
        return ", ".join(sorted(words, key=str.lower))
