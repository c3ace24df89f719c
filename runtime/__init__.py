"""What every Pintu service shares alike; it imports none of them."""
