"""The data: the EM phantom (:mod:`.phantom`), simulated acquisitions (:mod:`.degrade`), the dataset
registry (:mod:`.datasets`), real datasets' download and caching (:mod:`.sources`) and training and
test pairs (:mod:`.pairs`)."""
