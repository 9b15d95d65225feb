"""The data: the EM phantom (:mod:`.phantom`), simulated acquisitions (:mod:`.degrade`), the dataset
registry (:mod:`.datasets`), real datasets' download and caching (:mod:`.sources`), training and test
pairs (:mod:`.pairs`) and volumes' z grids and chunks (:mod:`.volumes`)."""
