"""Where units of work run: in this process (``local``, the default) or on a Ray cluster (``ray``).

A unit is a picklable function applied to one item and a shared object (the dataset); only the
caller (the driver) records results, as each unit finishes. Ray is imported only by the ``ray``
executor, when it starts.
"""
