//! The simulated runtime: containers "run" with no process at all (like KWOK), so one
//! kubelet process can host hundreds of nodes for scale tests.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use parking_lot::Mutex;

use super::{Container, ContainerConfig, Error, LogOptions, Result, Runtime, Sandbox, SandboxConfig, State, now};

/// Containers that exist only in memory.
#[derive(Default)]
pub struct Sim {
    pods: Mutex<HashMap<String, Vec<Container>>>,
    next: Mutex<u64>,
}

impl Sim {
    fn find(&self, id: &str) -> Option<(String, usize)> {
        let pods = self.pods.lock();
        pods.iter().find_map(|(uid, cs)| cs.iter().position(|c| c.id == id).map(|i| (uid.clone(), i)))
    }

    fn set_state(&self, id: &str, state: State) -> Result<()> {
        let (uid, i) = self.find(id).ok_or_else(|| Error::NotFound(format!("container {id}")))?;
        if let Some(c) = self.pods.lock().get_mut(&uid).and_then(|cs| cs.get_mut(i)) {
            c.state = state;
        }
        Ok(())
    }
}

#[async_trait]
impl Runtime for Sim {
    fn name(&self) -> &'static str {
        "sim"
    }

    fn version(&self) -> String {
        "sim://1.0".into()
    }

    fn needs_polling(&self) -> bool {
        false
    }

    async fn image_present(&self, _image: &str) -> Result<bool> {
        Ok(true)
    }

    async fn run_sandbox(&self, config: &SandboxConfig) -> Result<Sandbox> {
        self.pods.lock().entry(config.pod_uid.clone()).or_default();
        // A stable fake address per pod, in 10.0.0.0/8.
        let h = config.pod_uid.bytes().fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
        Ok(Sandbox {
            id: config.pod_uid.clone(),
            ip: format!("10.{}.{}.{}", (h >> 16) & 0xff, (h >> 8) & 0xff, (h & 0xff).max(1)),
            netns: None,
        })
    }

    async fn remove_sandbox(&self, pod_uid: &str) -> Result<()> {
        self.pods.lock().remove(pod_uid);
        Ok(())
    }

    async fn create_container(&self, sandbox: &Sandbox, config: &ContainerConfig) -> Result<String> {
        let id = {
            let mut n = self.next.lock();
            *n += 1;
            format!("sim-{}", *n)
        };
        let c = Container {
            id: id.clone(),
            pod_uid: config.pod_uid.clone(),
            name: config.name.clone(),
            attempt: config.attempt,
            image: config.image.clone(),
            state: State::Created,
        };
        let mut pods = self.pods.lock();
        let containers = pods.entry(sandbox.id.clone()).or_default();
        containers.reserve_exact(1);
        containers.push(c);
        Ok(id)
    }

    async fn start_container(&self, id: &str) -> Result<()> {
        self.set_state(id, State::Running { started_at: now() })
    }

    async fn stop_container(&self, id: &str, _grace: Duration) -> Result<()> {
        let started = match self
            .find(id)
            .and_then(|(uid, i)| self.pods.lock().get(&uid).and_then(|cs| cs.get(i)).map(|c| c.state.clone()))
        {
            Some(State::Running { started_at }) => started_at,
            _ => now(),
        };
        self.set_state(id, State::Exited { code: 0, started_at: started, finished_at: now(), oom_killed: false })
    }

    async fn remove_container(&self, id: &str) -> Result<()> {
        if let Some((uid, i)) = self.find(id)
            && let Some(cs) = self.pods.lock().get_mut(&uid)
        {
            cs.remove(i);
        }
        Ok(())
    }

    async fn pod_containers(&self, pod_uid: &str) -> Result<Vec<Container>> {
        Ok(self.pods.lock().get(pod_uid).cloned().unwrap_or_default())
    }

    async fn pods(&self) -> Result<Vec<String>> {
        Ok(self.pods.lock().keys().cloned().collect())
    }

    async fn exec(&self, _id: &str, _command: &[String], _timeout: Duration) -> Result<i32> {
        Ok(0)
    }

    async fn logs(&self, _id: &str, _options: LogOptions) -> Result<BoxStream<'static, Bytes>> {
        Ok(futures::stream::empty().boxed())
    }
}
