//! The Step Functions `Orchestrator`: one execution chain per dump, the first execution
//! named after the dump id (so a repeated start is a no-op), later ones `ID.gN` after a
//! continue-as-new.

use async_trait::async_trait;
use aws_sdk_sfn::types::ExecutionStatus;

use super::sdk_error;
use crate::error::DumpError;
use crate::execution::{execution_arn, execution_name, generation_input, generation_of};
use crate::ports::{Orchestrator, RunState};

/// Starts, stops and describes dump runs as Step Functions executions.
#[derive(Clone)]
pub struct SfnOrchestrator {
    client: aws_sdk_sfn::Client,
    state_machine_arn: String,
    /// The fleet state machine (`CHUNKDUMP_FLEET_STATE_MACHINE_ARN`), if deployed.
    fleet_state_machine_arn: Option<String>,
}

impl SfnOrchestrator {
    /// Uses the state machine `state_machine_arn` (`AWS_ENDPOINT_URL_SFN` may point the
    /// client at a local server).
    pub fn new(
        config: &aws_config::SdkConfig,
        state_machine_arn: &str,
    ) -> Result<Self, crate::config::ConfigError> {
        if !state_machine_arn.starts_with("arn:") || !state_machine_arn.contains(":stateMachine:") {
            return Err(crate::config::ConfigError::Invalid {
                name: "CHUNKDUMP_STATE_MACHINE_ARN",
                value: state_machine_arn.to_string(),
                reason: "not a state machine ARN".into(),
            });
        }
        Ok(SfnOrchestrator {
            client: aws_sdk_sfn::Client::new(config),
            state_machine_arn: state_machine_arn.to_string(),
            fleet_state_machine_arn: None,
        })
    }

    /// Also starts fleets, as executions of `fleet_state_machine_arn`.
    pub fn with_fleets(
        mut self,
        fleet_state_machine_arn: &str,
    ) -> Result<Self, crate::config::ConfigError> {
        if !fleet_state_machine_arn.starts_with("arn:")
            || !fleet_state_machine_arn.contains(":stateMachine:")
        {
            return Err(crate::config::ConfigError::Invalid {
                name: "CHUNKDUMP_FLEET_STATE_MACHINE_ARN",
                value: fleet_state_machine_arn.to_string(),
                reason: "not a state machine ARN".into(),
            });
        }
        self.fleet_state_machine_arn = Some(fleet_state_machine_arn.to_string());
        Ok(self)
    }

    /// Starts execution `generation` of dump `id` at job version `version`; a name
    /// already taken means that run exists (a repeated request): not an error.
    async fn start_generation(
        &self,
        id: &str,
        version: u64,
        generation: u32,
    ) -> Result<(), DumpError> {
        let result = self
            .client
            .start_execution()
            .state_machine_arn(&self.state_machine_arn)
            .name(execution_name(id, generation))
            .input(generation_input(id, version, generation).to_string())
            .send()
            .await;
        match result {
            Ok(out) => {
                tracing::info!(dump_id = %id, execution = %out.execution_arn(), "execution started");
                Ok(())
            }
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_execution_already_exists()) =>
            {
                Ok(())
            }
            Err(e) => Err(DumpError::Store(sdk_error("start execution", e))),
        }
    }

    /// The names and statuses of the dump's executions, newest first.
    async fn executions(
        &self,
        id: &str,
        status: Option<ExecutionStatus>,
    ) -> Result<Vec<(String, ExecutionStatus)>, DumpError> {
        let mut pages = self
            .client
            .list_executions()
            .state_machine_arn(&self.state_machine_arn)
            .set_status_filter(status)
            .into_paginator()
            .send();
        let mut found = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| DumpError::Store(sdk_error("list executions", e)))?;
            for e in page.executions() {
                if let Some(generation) = generation_of(id, e.name()) {
                    // Newest first: by start time, then generation (a resume can start
                    // the next execution within the clock tick of the last one's end).
                    found.push((
                        (e.start_date().as_nanos(), generation),
                        e.name().to_string(),
                        e.status().clone(),
                    ));
                }
            }
        }
        found.sort_by_key(|e| std::cmp::Reverse(e.0));
        Ok(found
            .into_iter()
            .map(|(_, name, status)| (name, status))
            .collect())
    }
}

#[async_trait]
impl Orchestrator for SfnOrchestrator {
    async fn start_fleet(&self, fleet_id: &str, input: serde_json::Value) -> Result<(), DumpError> {
        let Some(arn) = &self.fleet_state_machine_arn else {
            return Err(DumpError::InvalidRequest(
                "this deployment has no fleet state machine (CHUNKDUMP_FLEET_STATE_MACHINE_ARN)"
                    .into(),
            ));
        };
        let result = self
            .client
            .start_execution()
            .state_machine_arn(arn)
            .name(execution_name(fleet_id, 0))
            .input(input.to_string())
            .send()
            .await;
        match result {
            Ok(out) => {
                tracing::info!(fleet_id = %fleet_id, execution = %out.execution_arn(), "fleet execution started");
                Ok(())
            }
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_execution_already_exists()) =>
            {
                Ok(())
            }
            Err(e) => Err(DumpError::Store(sdk_error("start fleet execution", e))),
        }
    }

    async fn start(&self, id: &str, version: u64) -> Result<(), DumpError> {
        self.start_generation(id, version, 0).await
    }

    async fn resume(&self, id: &str, version: u64) -> Result<(), DumpError> {
        let last = self
            .executions(id, None)
            .await?
            .iter()
            .filter_map(|(name, _)| generation_of(id, name))
            .max();
        self.start_generation(id, version, last.map_or(0, |g| g + 1))
            .await
    }

    async fn stop(&self, id: &str) -> Result<(), DumpError> {
        for (name, _) in self.executions(id, Some(ExecutionStatus::Running)).await? {
            let result = self
                .client
                .stop_execution()
                .execution_arn(execution_arn(&self.state_machine_arn, &name))
                .cause("cancelled by the API")
                .send()
                .await;
            if let Err(e) = result {
                if !e
                    .as_service_error()
                    .is_some_and(|s| s.is_execution_does_not_exist())
                {
                    return Err(DumpError::Store(sdk_error("stop execution", e)));
                }
            }
        }
        Ok(())
    }

    async fn describe(&self, id: &str) -> Result<RunState, DumpError> {
        // Running executions are few; only a dump with none needs the whole history.
        if !self
            .executions(id, Some(ExecutionStatus::Running))
            .await?
            .is_empty()
        {
            return Ok(RunState::Running);
        }
        Ok(match self.executions(id, None).await?.into_iter().next() {
            Some((_, ExecutionStatus::Running)) => RunState::Running,
            Some((_, status)) => RunState::Ended(status.as_str().to_string()),
            None => RunState::None,
        })
    }
}
