"""Where statuses come from: pluggable sources behind one small interface (SPEC 6).

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
the finger service asks them from its lookup workers, never from the thread
that accepts connections.
"""
