"""The test suite: test folders by what their tests need, `helpers` for what they share."""
