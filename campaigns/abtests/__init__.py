"""A/B tests: variants of a campaign tried on a share of its audience, the winner judged by what people did (human
clicks, human opens or coupon redemptions; never machine opens) with a two-proportion z-test, and sent to the rest."""
