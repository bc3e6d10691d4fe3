//! Deliberate breakages of the rules, for checking that the test suite
//! catches them (mutation testing). Compiled in only with the feature
//! `mutations` (the core's own tests turn it on); without it, [`active`] is
//! `false` at compile time and every hook disappears.

/// One deliberate breakage of a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Mutation {
    /// Judge every write under the author's latest role (today's roster).
    RoleOfToday,
    /// Let anyone roll progress back.
    AnyoneRollsBack,
    /// Let anyone rename a section or plan a route.
    AnyoneIsOffice,
    /// Order a field's writes by stamp alone (a clock ahead wins).
    StampOrder,
    /// Apply off-route points instead of quarantining them.
    NoQuarantine,
    /// Rank concurrent transitions by stamp alone (role ignored).
    TransitionsByStamp,
    /// Ignore when the hub received a write: count it at its stamp alone.
    UnboundedStamps,
}

impl Mutation {
    /// Every mutation.
    pub const ALL: [Mutation; 7] = [
        Mutation::RoleOfToday,
        Mutation::AnyoneRollsBack,
        Mutation::AnyoneIsOffice,
        Mutation::StampOrder,
        Mutation::NoQuarantine,
        Mutation::TransitionsByStamp,
        Mutation::UnboundedStamps,
    ];
}

#[cfg(feature = "mutations")]
thread_local! {
    static ACTIVE: std::cell::Cell<Option<Mutation>> = const { std::cell::Cell::new(None) };
}

/// Break the rules on the calling thread with `mutation` (`None`: the real rules).
#[cfg(feature = "mutations")]
pub fn set_mutation(mutation: Option<Mutation>) {
    ACTIVE.with(|m| m.set(mutation));
}

/// Whether `mutation` is active on this thread.
#[inline]
pub(crate) fn active(mutation: Mutation) -> bool {
    #[cfg(feature = "mutations")]
    {
        ACTIVE.with(|m| m.get() == Some(mutation))
    }
    #[cfg(not(feature = "mutations"))]
    {
        let _ = mutation;
        false
    }
}
