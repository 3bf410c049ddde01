"""Planning over imagined rollouts (DESIGN §4): goal costs, CEM / MPPI / random shooting, MPC warm starts.

Runtime side: imports torch and numpy, never a simulator or the training code. The objective adapts a
:class:`~crcm_robotics.runtime.WorldModel` (or any frame renderer) into the planners' score function.
"""

from crcm_robotics.plan.costs import COSTS, CostError, latent_mse, make_cost
from crcm_robotics.plan.planners import ACTION_MODES, MPC, PLANNERS, ActionSpace, PlanError, PlanResult, SamplingPlanner

__all__ = ["ACTION_MODES", "COSTS", "MPC", "PLANNERS", "ActionSpace", "CostError", "PlanError", "PlanResult",
           "SamplingPlanner", "latent_mse", "make_cost"]
