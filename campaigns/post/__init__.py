"""Letters and cards by post: eligibility, the print run (PDF, labels, CSV) and the no-post choice."""
