"""word-count-py's tests, in plain CPython (no host, no build): python3 -m unittest."""

import unittest

import wasm_orch_testing as t

t.install()
import app  # noqa: E402


class WordCountTest(unittest.TestCase):
    def test_counts_lowercased_words(self):
        outcome = t.TestRun({"text": "The cat, the HAT.\nA cat!"}).run(app.Agent)
        self.assertIsNone(outcome.error)
        self.assertEqual(outcome.output["words"], 6)
        self.assertEqual(outcome.output["counts"], {"a": 1, "cat": 2, "hat": 1, "the": 2})
        self.assertEqual(outcome.progress[-1][0], 1.0)

    def test_text_must_be_a_string(self):
        self.assertEqual(t.TestRun({"text": 3}).run(app.Agent).error[0], "invalid-input")


if __name__ == "__main__":
    unittest.main()
