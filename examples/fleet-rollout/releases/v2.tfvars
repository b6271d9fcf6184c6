# v2: garbage collection moves an hour later on every store's datastore.
gc_schedule = "sun 05:00"
