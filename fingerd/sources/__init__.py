"""Where statuses come from: pluggable sources behind one small interface (docs/sources.md, "Sources").

::

    finger / web / JSON / XML-RPC / IRC
                  |
              Directory  -- asks the sources in --source order, first that knows wins
                  |
       +----------+-----------+-------------+
     file       passwd      command        web
   (the user   (pwd and    (a local      (requests,
    table)      ~/.plan)    program)      with a cache)

A source is anything with ``lookup(name)`` and ``names()`` (`base.Source`).
Only the status file answers from memory; every other source may block, so
the finger service asks them from the connection's own thread, never from
the thread that accepts connections.  Each slow source bounds itself (at
most 4 commands, 4 fetches, 4 home-directory readers at once), and a lookup
waits for it only until the query's deadline: a slow source holds the
threads of the queries that asked it, and nobody else's.
"""
