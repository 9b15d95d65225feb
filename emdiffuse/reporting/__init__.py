"""What the benchmark shows: tables (:mod:`.tables`, one Markdown writer :mod:`.markdown`),
figures (:mod:`.plots`) and the stage timings of a run (:mod:`.timings`)."""
