//! What a guest can reach beyond its own memory, one capability per module (the model is
//! Spin's factors): [`status`], [`files`], [`blackboard`], [`tools`], [`secrets`], [`messages`].
//!
//! Each capability holds, in one place:
//! - its **policy check**: what a task may do, decided from the workflow's grants and its
//!   tenant's policy, never from the guest's word;
//! - its **host implementation** of its WIT interface (`host.rs`): a view over the
//!   per-attempt state the engine keeps in the store, and one `add_to_linker` that takes a
//!   getter for that view, so a capability never knows the engine's store type;
//! - its **audit**: every decision about something a guest asked for (allowed or denied, and
//!   why) is an `agent.audit` event of the task, through the task's budgeted emitter.
//!
//! Each is testable alone, without a guest: the policy checks are plain functions and types.
//! Capabilities import only the model, the bus, governance, policy and the WIT bindings; the
//! engine wires them into a store.

pub(crate) mod blackboard;
pub(crate) mod files;
pub(crate) mod messages;
pub(crate) mod secrets;
pub(crate) mod status;
pub(crate) mod tools;
