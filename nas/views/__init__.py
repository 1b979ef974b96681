"""Views of the record: dashboard notes (`notes`), report files and plots (`report`), console tables (`console`),
proxy-fidelity text (`fidelity`), the paper table (`final`) and the words for a named point's standing (`standing`).
They read `nas.record` and never write trial results.
"""
