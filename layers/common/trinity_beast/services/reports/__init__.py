"""Usage reports, one concern per module; import a name from the module that defines it.

`filters` checks the query parameters, `cursor` signs the position of the next page,
`gather` reads the database and the cache's unsynced buckets into rows and pages, `render`
turns a page into JSON data, CSV, TSV or text, and `answers` is the transport-neutral
answer to a report request (the LRS, the LPO and the reports Lambda adapt it).
"""
