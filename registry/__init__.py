"""The registry service: the encrypted watchlist and the rules around it."""
