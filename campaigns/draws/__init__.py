"""Prize draws: rules and an entry window, eligibility by segment, one-click entry from a mail, a verifiable draw
(seed committed by its hash before the window closes, revealed at the draw), winners notified by the owner."""
