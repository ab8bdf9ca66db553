"""The review queue: claims and leases, the annotator's actions (accept, edit, reject, skip, undo) and progress."""
