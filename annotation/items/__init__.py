"""Items and their audit log: the one owner of item changes (``services``), the lead's item browser and item page."""
