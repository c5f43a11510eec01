"""Double opt-in sign-up: forms, confirmation mail, consent proof."""
