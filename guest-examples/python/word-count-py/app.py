"""word-count-py: the word count's mapper in Python. Counts the words of one chunk of text
(a word is a maximal run of alphanumeric characters, lowercased), like the Rust `word-count`,
and reports progress every 50 lines."""

import wasm_orch


class WordCount(wasm_orch.Agent):
    name = "word-count-py"
    description = "Counts the words of one chunk of text (Python)"
    capabilities = ["text.word-count"]

    def run(self, cx):
        text = cx.params.get("text")
        if not isinstance(text, str):
            raise wasm_orch.InvalidInput("`text` must be a string")
        counts = {}
        words = 0
        lines = text.splitlines()
        for i, line in enumerate(lines):
            word = []
            for ch in line + " ":
                if ch.isalnum():
                    word.append(ch)
                elif word:
                    w = "".join(word).lower()
                    counts[w] = counts.get(w, 0) + 1
                    words += 1
                    word = []
            if i % 50 == 49:
                wasm_orch.progress((i + 1) / len(lines), f"{words} words")
        wasm_orch.progress(1.0, f"{words} words, {len(counts)} distinct")
        return {"words": words, "counts": dict(sorted(counts.items()))}


Agent = wasm_orch.export(WordCount)
