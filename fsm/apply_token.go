package fsm

// applyTokenRevoke records a token id (jti) as revoked until ExpiresAt. It
// serves refresh and access tokens alike: jtis are random, so one table
// holds both, and every apply purges rows past their expiry, which bounds
// it by the tokens issued within one lifetime. The API checks access tokens
// against it on every request, refresh tokens at rotation.
func applyTokenRevoke(t *tx, c *TokenRevoke) *Response {
	if c.TokenID == "" {
		return fail(errorf(CodeInvalid, "token id is required"))
	}
	// Revoking twice fails so that refresh-token rotation is atomic: of two
	// concurrent refreshes with the same token, only one wins.
	if raw, err := t.txn.First(tableTokens, "id", c.TokenID); err == nil && raw != nil {
		return fail(errorf(CodeExists, "token %s is already revoked", c.TokenID))
	}
	t.putToken(c.TokenID, c.ExpiresAt)
	return &Response{}
}
