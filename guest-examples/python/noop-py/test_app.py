"""noop-py's tests, in plain CPython (no host, no build): python3 -m unittest."""

import unittest

import wasm_orch_testing as t

t.install()
import app  # noqa: E402 (after the fake bindings are in place)


class NoopTest(unittest.TestCase):
    def test_does_nothing_and_says_nothing(self):
        outcome = t.TestRun({}).run(app.Agent)
        self.assertIsNone(outcome.error)
        self.assertIsNone(outcome.output)
        self.assertEqual(outcome.progress, [])
        self.assertEqual(outcome.partials, [])


if __name__ == "__main__":
    unittest.main()
