"""Coupon pools: codes, assignment at send time, redemption, apology mail."""
