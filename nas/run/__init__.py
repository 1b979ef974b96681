"""Everything that executes: Ray connection and concurrency (`cluster`), the sampler (`sampling`), the Ray Tune
searcher (`searcher`), a trial (`trial`) and its quiet latency lock (`quiet`), the search run (`search`), the
end-of-search latency re-measure (`latency`), and the repeat, fidelity and final-stage runners. Results go to the
record (`nas.record`); notes are written through `nas.views.notes`.
"""
