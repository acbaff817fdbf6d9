"""Who may do what: users (email login), organizations, memberships with roles,
invitations, API keys (account and deployment), and the API authentication built on them."""
