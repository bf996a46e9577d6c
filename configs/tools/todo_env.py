"""A to-do list the model edits with tools. The reward is the list's final state: 1.0 when it
holds exactly what the task asked for, in order (case and surrounding spaces ignored).

Prompt rows (configs/tools/todo_prompts.jsonl) carry the task and the answer:
    {"prompt": "Add 'buy milk' to my list.", "start": ["call mom"], "expected": ["call mom", "buy milk"]}
Used by configs/tools/ppo_grpo_todo.yaml; explained in the docs page "Tools and environments".
"""


class TodoList:
    def reset(self, row: dict) -> str:
        """A fresh list per episode; the text returned is added to the user's first message."""
        self.items = [str(item) for item in row.get("start", [])]
        self.expected = [str(item) for item in row["expected"]]
        return f"(Your list now holds: {', '.join(self.items) or 'nothing'}.)"

    def add_item(self, item: str) -> str:
        """Add one item to the end of the to-do list.

        Args:
            item: what to do, e.g. "buy milk"
        """
        self.items.append(item.strip())
        return f"Added. The list: {self.items}"

    def remove_item(self, item: str) -> str:
        """Remove an item from the to-do list.

        Args:
            item: the item's text, as the list shows it
        """
        matches = [i for i in self.items if i.lower() == item.strip().lower()]
        if not matches:
            raise ValueError(f"{item!r} is not on the list {self.items}")
        self.items.remove(matches[0])
        return f"Removed. The list: {self.items}"

    def show_list(self) -> str:
        """Show the to-do list as it is now."""
        return str(self.items)

    def reward(self) -> float:
        normalise = lambda items: [i.strip().lower() for i in items]  # noqa: E731
        return 1.0 if normalise(self.items) == normalise(self.expected) else 0.0
