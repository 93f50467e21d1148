"""Generalised advantage estimation over a vectorised rollout, as PPO computes it.

64 copies of a small environment run for 2048 steps; episodes end at random, a critic gives
values, and the advantages and returns are computed by scanlab.rl.gae and by the loop of PPO
implementations (backwards over time, the environments of a step together).

Run: python examples/rollout_gae.py [--steps N]
"""

import argparse
import time

import numpy as np

from scanlab.rl import discounted_returns, gae

GAMMA, LAM = 0.99, 0.95


def rollout(steps: int, environments: int, rng):
    """Rewards, the critic's values, episode ends and the value after the last step of a
    random walk towards a goal: +1 at the goal (the episode ends there), -0.01 per step."""
    position = np.zeros(environments)
    rewards = np.empty((steps, environments), np.float32)
    dones = np.empty((steps, environments), bool)
    values = np.empty((steps, environments), np.float32)
    for t in range(steps):
        values[t] = 1.0 - np.abs(position - 10) / 10  # a rough critic
        position += rng.choice([-1.0, 1.0], environments, p=[0.4, 0.6])
        dones[t] = position >= 10
        rewards[t] = np.where(dones[t], 1.0, -0.01)
        position[dones[t]] = 0.0
    last_value = (1.0 - np.abs(position - 10) / 10).astype(np.float32)
    return rewards, values, dones, last_value


def loop_gae(rewards, values, dones, last_value):
    """The loop of PPO implementations."""
    advantages = np.zeros_like(rewards)
    advantage = np.zeros_like(last_value)
    for t in reversed(range(len(rewards))):
        next_value = last_value if t == len(rewards) - 1 else values[t + 1]
        not_done = 1.0 - dones[t]
        delta = rewards[t] + GAMMA * next_value * not_done - values[t]
        advantage = delta + GAMMA * LAM * not_done * advantage
        advantages[t] = advantage
    return advantages, advantages + values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2048)
    parser.add_argument("--environments", type=int, default=64)
    arguments = parser.parse_args()
    rewards, values, dones, last_value = rollout(
        arguments.steps, arguments.environments, np.random.default_rng(0)
    )
    shape = f"{arguments.environments} environments x {arguments.steps} steps"
    print(f"{shape}, {dones.sum()} episode ends")
    gae(rewards, values, dones, last_value, gamma=GAMMA, lam=LAM)  # compile
    start = time.perf_counter()
    advantages, returns = gae(rewards, values, dones, last_value, gamma=GAMMA, lam=LAM)
    spent = time.perf_counter() - start
    start = time.perf_counter()
    expected_advantages, expected_returns = loop_gae(rewards, values, dones, last_value)
    loop_spent = time.perf_counter() - start
    print(f"scanlab gae {1e3 * spent:.2f} ms, the NumPy loop {1e3 * loop_spent:.2f} ms")
    print(f"  max |advantages - loop| = {np.max(np.abs(advantages - expected_advantages)):.1e}")
    print(f"  max |returns - loop| = {np.max(np.abs(returns - expected_returns)):.1e}")
    normalised = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
    print(f"  normalised advantages: mean {normalised.mean():.1e}, std {normalised.std():.3f}")
    monte_carlo = discounted_returns(rewards, GAMMA, dones=dones, bootstrap=last_value)
    _, lam_one_returns = gae(rewards, values, dones, last_value, gamma=GAMMA, lam=1.0)
    difference = np.max(np.abs(lam_one_returns - monte_carlo))
    print(
        f"  with lam = 1 the returns are the discounted returns: max |gae - G| = {difference:.1e}"
    )


if __name__ == "__main__":
    main()
