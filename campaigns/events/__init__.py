"""Event invitations (docs/events.md): an event attached to a nurture campaign, one-click replies with an exact
capacity and a waitlist, calendar files, the reminder the day before, attendance."""
