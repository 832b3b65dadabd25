"""tally-py's tests, in plain CPython (no host, no build): python3 -m unittest."""

import unittest

import wasm_orch_testing as t

t.install()
import app  # noqa: E402 (after the fake bindings are in place)
import wasm_orch  # noqa: E402


class TallyTest(unittest.TestCase):
    def test_adds_to_the_shared_tally_after_sleeping(self):
        outcome = (
            t.TestRun({"items": ["apple", "fig", "apple"], "delay_ms": 5})
            .blackboard("shared/tally", {"apple": 1})
            .sleep_tool()
            .run(app.Agent)
        )
        self.assertIsNone(outcome.error)
        self.assertEqual(outcome.output["added"], 3)
        self.assertEqual(outcome.blackboard["shared/tally"], {"apple": 3, "fig": 1})
        self.assertEqual(outcome.tool_calls, [("sleep", {"ms": 5})])
        self.assertEqual(len(outcome.partials), 3)
        self.assertEqual(outcome.progress[-1][0], 1.0)
        self.assertIn(("info", "task added 3 items"), outcome.logs)

    def test_items_that_are_not_strings_are_invalid_input(self):
        outcome = t.TestRun({"items": [1, 2]}).run(app.Agent)
        self.assertEqual(outcome.error[0], "invalid-input")

    def test_without_the_sleep_grant_the_task_fails(self):
        outcome = t.TestRun({"items": ["a"], "delay_ms": 1}).run(app.Agent)
        self.assertEqual(outcome.error[0], "failed")
        self.assertIn("not granted", outcome.error[1])

    def test_an_upstream_failure_is_named_by_its_contract_status_and_kind(self):
        class Reader(wasm_orch.Agent):
            name = "reader"

            def run(self, cx):
                return cx.upstream()

        outcome = (
            t.TestRun({})
            .upstream_failed("fetch", "timed-out", "timeout", "ran past 5s")
            .run(wasm_orch.export(Reader))
        )
        self.assertEqual(outcome.error[0], "invalid-input")
        self.assertIn("`fetch` ended timed-out (timeout): ran past 5s", outcome.error[1])
        with self.assertRaises(ValueError):
            t.TestRun({}).upstream_failed("fetch", "timedout", "timeout", "typo")


if __name__ == "__main__":
    unittest.main()
