"""Deliberately broken variants of every built-in rule, for ``benchmarks.mutation_check``.

A mutant: the rule it breaks, what it breaks (one line), the file it patches and (old, new) text
replacements (each old text must occur exactly once), and the pytest node ids that are the rule's
tests. The issue-21 variants (pc, ff, dtp, fwd_grad) are marked "issue 21". The issue-31 variants
(``OPTION_MUTANTS``: an option ignored, a sign flipped, a scale changed, in every rule and in the
optimizer path the gradient-based rules share, rule "optimizer") are killed by the option audit,
``tests/test_option_audit.py`` (``Mutant.tests``).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Mutant:
    rule: str
    what: str
    path: str
    edits: tuple[tuple[str, str], ...]
    tests: tuple[str, ...] = ()  # the tests that must kill it; empty: its rule's (``TESTS[rule]``)

    def test_ids(self) -> tuple[str, ...]:
        return self.tests or TESTS[self.rule]


AUDIT = ("tests/test_option_audit.py",)

TESTS: dict[str, tuple[str, ...]] = {
    "optimizer": AUDIT,  # the optimizer options shared by the gradient-based rules (make_optimizer)
    "pc": ("tests/test_fidelity_pc.py",),
    "ff": ("tests/test_fidelity_ff.py",),
    "dtp": ("tests/test_fidelity_dtp.py",),
    "fwd_grad": ("tests/test_fidelity_fwd_grad.py",),
    "backprop": (
        "tests/test_fidelity_classic.py::test_backprop_is_the_exact_gradient_of_its_own_loss",
        "tests/test_fidelity_classic.py::test_backprop_loss_is_pcs_top_loss",
    ),
    "fa": ("tests/test_fidelity_classic.py::test_feedback_rules_follow_their_feedback_with_the_output_layer_exact",),
    "dfa": ("tests/test_fidelity_classic.py::test_feedback_rules_follow_their_feedback_with_the_output_layer_exact",),
    "sign_symmetry": (
        "tests/test_fidelity_classic.py::test_feedback_rules_follow_their_feedback_with_the_output_layer_exact",
    ),
    "brsf": (
        "tests/test_fidelity_sign_concordant.py::test_sign_concordant_feedback_follows_current_signs_and_its_magnitude_rule",
    ),
    "frsf": (
        "tests/test_fidelity_sign_concordant.py::test_sign_concordant_feedback_follows_current_signs_and_its_magnitude_rule",
    ),
    "es": ("tests/test_fidelity_classic.py::test_es_estimate_is_the_antithetic_rank_shaped_one",),
    "ga": ("tests/test_fidelity_classic.py::test_ga_keeps_its_elite_selects_among_the_best_and_mutates_by_sigma",),
    "cmaes": ("tests/test_fidelity_classic.py::test_cmaes_descends_the_loss_and_its_model_is_the_centroid",),
    "snn_bptt": (
        "tests/test_spiking.py::test_true_gradient_is_bptt_on_the_same_spikes_and_changes_nothing",
        "tests/test_spiking.py::test_time_loop_is_snntorchs_leaky_update_exactly",
    ),
    "snn_dfa": ("tests/test_spiking.py::test_eprop_with_feedback_set_to_w_out_transposed_is_bptt",),
}

MUTANTS: tuple[Mutant, ...] = (
    # ---- issue 21, Why point 8 -------------------------------------------------------------
    Mutant(
        "pc",
        "issue 21: inference capped at 2 steps whatever T is",
        "learners/pc.py",
        (("for t in range(self.params.inference_steps):", "for t in range(min(2, self.params.inference_steps)):"),),
    ),
    Mutant(
        "pc",
        "issue 21: fixed-prediction assumption (predictions never recomputed)",
        "learners/pc.py",
        (
            (
                "                if k > 0:\n                    mu[k]",
                "                if False:\n                    mu[k]",
            ),
        ),
    ),
    Mutant(
        "pc",
        "issue 21: weights learn from the feedforward instead of the relaxed activities",
        "learners/pc.py",
        (
            ("        mu = list(v)  # predictions", "        a_ff = list(a)\n        mu = list(v)  # predictions"),
            ("zip(self.layers, errors, a):", "zip(self.layers, errors, a_ff):"),
        ),
    ),
    Mutant(
        "pc",
        "issue 21: hidden errors scaled x10",
        "learners/pc.py",
        (
            (
                "errors = [*eps, self._top_error(logits, target)]",
                "errors = [*(10 * e for e in eps), self._top_error(logits, target)]",
            ),
        ),
    ),
    Mutant(
        "ff",
        "issue 21: no length-normalization between layers",
        "learners/ff.py",
        (("if i == 0 or self.params.normalize else inp", "if i == 0 else inp"),),
    ),
    Mutant(
        "ff",
        "issue 21: prediction from the first layer's goodness only",
        "learners/ff.py",
        (("detach=True)).sum(0)", "detach=True))[0]"),),
    ),
    Mutant(
        "ff",
        "issue 21: negatives may carry the true label",
        "learners/ff.py",
        (("shift = torch.randint(1, self.task.n_classes", "shift = torch.randint(0, self.task.n_classes"),),
    ),
    Mutant(
        "dtp",
        "issue 21: no noise in inverse training",
        "learners/dtp.py",
        (("noisy = h + self.params.noise * torch.randn", "noisy = h + 0.0 * torch.randn"),),
    ),
    Mutant(
        "dtp",
        "issue 21: inverses reconstruct the clean instead of the noisy activity",
        "learners/dtp.py",
        (("(inverse(f) - noisy).pow(2)", "(inverse(f) - h).pow(2)"),),
    ),
    Mutant(
        "dtp",
        "issue 21: targets computed before the inverses are updated",
        "learners/dtp.py",
        (
            (
                "        self._train_inverses(inputs)\n        targets = self._targets(outputs, y)\n",
                "        targets = self._targets(outputs, y)\n        self._train_inverses(inputs)\n",
            ),
        ),
    ),
    Mutant(
        "fwd_grad",
        "issue 21: estimate scaled x2",
        "learners/fwd_grad.py",
        (("scale = slope / self.params.tangents", "scale = 2 * slope / self.params.tangents"),),
    ),
    Mutant(
        "fwd_grad",
        "issue 21: tangents with variance 1/12 instead of 1",
        "learners/fwd_grad.py",
        (
            (
                "return torch.randn(like.shape, generator=self.noise, device=like.device, dtype=like.dtype)",
                "return torch.rand(like.shape, generator=self.noise, device=like.device, dtype=like.dtype) - 0.5",
            ),
        ),
    ),
    Mutant(
        "fwd_grad",
        "issue 21: the activity variant misses the 1/B batch mean",
        "learners/fwd_grad.py",
        (("            g /= x.shape[0]  # the loss is the batch mean", "            pass"),),
    ),
    Mutant(
        "fwd_grad",
        "issue 21: biases never perturbed (so never trained)",
        "learners/fwd_grad.py",
        (
            (
                "v = {name: self._tangent(p) for name, p in primals.items()}",
                "v = {name: self._tangent(p) if name.endswith('weight') else torch.zeros_like(p) "
                "for name, p in primals.items()}",
            ),
        ),
    ),
    Mutant(
        "fwd_grad",
        "issue 21: the activity variant's bias estimate is zero",
        "learners/fwd_grad.py",
        (('estimate[f"{names[i]}.bias"] = g.sum(0)', 'estimate[f"{names[i]}.bias"] = torch.zeros_like(g.sum(0))'),),
    ),
    Mutant(
        "fwd_grad",
        "activity estimate scaled x2",
        "learners/fwd_grad.py",
        (("alpha=1.0 / self.params.tangents)", "alpha=2.0 / self.params.tangents)"),),
    ),
    # ---- backprop ----------------------------------------------------------------------------
    Mutant(
        "backprop",
        "squared error without the 1/2",
        "learners/losses.py",
        (("return 0.5 * (logits - target).square().sum(1).mean()", "return (logits - target).square().sum(1).mean()"),),
    ),
    # ---- classic rules -----------------------------------------------------------------------
    Mutant(
        "fa",
        "weight transport: the error goes back through W, not B",
        "learners/fa.py",
        (
            (
                "routes = {name: through(layers[name], b) for name, b in self.feedback.items()}",
                "routes = {name: through(layers[name], layers[name].weight.detach())"
                " for name, b in self.feedback.items()}",
            ),
        ),
    ),
    Mutant(
        "fa",
        "feedback redrawn at every step instead of fixed",
        "learners/fa.py",
        (
            (
                "        layers = dict(weight_layers(self.model))\n        routes",
                "        for b in self.feedback.values():\n            b.uniform_(-0.2, 0.2)\n"
                "        layers = dict(weight_layers(self.model))\n        routes",
            ),
        ),
    ),
    Mutant(
        "fa",
        "feedback route scaled x2",
        "learners/feedback.py",
        (("return lambda grad_out, x: grad_out @ matrix", "return lambda grad_out, x: 2 * (grad_out @ matrix)"),),
    ),
    Mutant(
        "dfa",
        "projected output error halved",
        "learners/feedback.py",
        (("return (tap.error @ matrix).view(x.shape)", "return (0.5 * tap.error @ matrix).view(x.shape)"),),
    ),
    Mutant(
        "dfa",
        "projected output error with the wrong sign",
        "learners/feedback.py",
        (("return (tap.error @ matrix).view(x.shape)", "return (-tap.error @ matrix).view(x.shape)"),),
    ),
    Mutant(
        "sign_symmetry",
        "sign feedback not refreshed from the current weights",
        "learners/sign_symmetry.py",
        (("            sign_feedback(layer, out=self._signs[name])", "            pass"),),
    ),
    Mutant(
        "sign_symmetry",
        "magnitudes transported: B = W instead of sign(W)",
        "learners/sign_symmetry.py",
        (
            (
                "return torch.sign(w, out=out).mul_(scale) if out is not None else w.sign().mul_(scale)",
                "return out.copy_(w) if out is not None else w.clone()",
            ),
        ),
    ),
    Mutant(
        "sign_symmetry",
        "sign feedback without its scale",
        "learners/sign_symmetry.py",
        (("    scale = math.sqrt(2.0 / (w.shape[1] * receptive + w.shape[0] * receptive))", "    scale = 1.0"),),
    ),
    # ---- issue 32: sign-concordant feedback with random magnitudes --------------------------
    Mutant(
        "brsf",
        "issue 32: magnitude drawn once (frSF), not redrawn every minibatch",
        "learners/sign_concordant.py",
        (("            if self.redraw:\n", "            if False:\n"),),
    ),
    Mutant(
        "frsf",
        "issue 32: magnitude redrawn every minibatch (brSF), not fixed",
        "learners/sign_concordant.py",
        (("    redraw = False\n", "    redraw = True\n"),),
    ),
    Mutant(
        "brsf",
        "issue 32: magnitude not made positive (random signs, not sign-concordant)",
        "learners/sign_concordant.py",
        (
            (
                "return draw_feedback(shape, self.generator).abs_().to(self.device)",
                "return draw_feedback(shape, self.generator).to(self.device)",
            ),
        ),
    ),
    Mutant(
        "frsf",
        "issue 32: weight magnitudes transported (B = W ∘ |M|, not sign(W) ∘ |M|)",
        "learners/sign_concordant.py",
        (
            (
                "torch.sign(layer.weight.detach(), out=self.feedback[name]).mul_(self.magnitude[name])",
                "self.feedback[name].copy_(layer.weight.detach()).mul_(self.magnitude[name])",
            ),
        ),
    ),
    Mutant(
        "frsf",
        "issue 32: magnitude twice the weights' init scale",
        "learners/sign_concordant.py",
        (
            (
                "return draw_feedback(shape, self.generator).abs_()",
                "return draw_feedback(shape, self.generator, 2.0).abs_()",
            ),
        ),
    ),
    Mutant(
        "brsf",
        "issue 32: signs of the initial weights, never refreshed",
        "learners/sign_concordant.py",
        (
            (
                "            torch.sign(layer.weight.detach(), out=self.feedback[name]).mul_(self.magnitude[name])",
                "            if not self.feedback[name].any():\n"
                "                self.start = getattr(self, 'start', {})\n"
                "                self.start[name] = layer.weight.detach().sign()\n"
                "            self.feedback[name].copy_(self.start[name] * self.magnitude[name])",
            ),
        ),
    ),
    Mutant(
        "es",
        "no antithetic pairs (both halves mean + sigma*eps)",
        "learners/es.py",
        (("torch.cat([self.mean + step, self.mean - step])", "torch.cat([self.mean + step, self.mean + step])"),),
    ),
    Mutant(
        "es",
        "estimate not divided by sigma",
        "learners/es.py",
        (("/ (len(population) * self.params.sigma)", "/ len(population)"),),
    ),
    Mutant(
        "es",
        "estimate with the wrong sign (ascends the loss)",
        "learners/es.py",
        (("self.gradient = -fitness_gradient +", "self.gradient = fitness_gradient +"),),
    ),
    Mutant(
        "ga",
        "elite mutated instead of kept",
        "learners/ga.py",
        (
            (
                "elites = [self.toolbox.clone(ind) for ind in ranked[: p.elites]]",
                "elites = [self.toolbox.mutate(self.toolbox.clone(ind))[0] for ind in ranked[: p.elites]]",
            ),
        ),
    ),
    Mutant(
        "ga",
        "truncation picks parents among the worst",
        "learners/ga.py",
        (
            (
                "return tools.selRandom(tools.selBest(individuals, keep), k)",
                "return tools.selRandom(tools.selWorst(individuals, keep), k)",
            ),
        ),
    ),
    Mutant(
        "ga",
        "mutation of std 2 sigma",
        "learners/ga.py",
        (("dtype=ind.dtype), alpha=sigma)", "dtype=ind.dtype), alpha=2 * sigma)"),),
    ),
    Mutant(
        "cmaes",
        "fitness sign flipped (maximizes the loss)",
        "learners/cmaes.py",
        (("return [(v,) for v in evaluate(matrix).tolist()]", "return [(-v,) for v in evaluate(matrix).tolist()]"),),
    ),
    Mutant(
        "cmaes",
        "model keeps the old centroid",
        "learners/cmaes.py",
        (
            (
                "        self._signal = before - self.strategy.centroid\n"
                "        self.forward.flat.load(self.model, torch.from_numpy(self.strategy.centroid).float())",
                "        self._signal = before - self.strategy.centroid\n"
                "        self.forward.flat.load(self.model, torch.from_numpy(before).float())",
            ),
        ),
    ),
    Mutant(
        "snn_bptt",
        "loss doubled in the training step",
        "learners/snn_bptt.py",
        (("loss = F.cross_entropy(self.net(inp), y)", "loss = 2 * F.cross_entropy(self.net(inp), y)"),),
    ),
    Mutant(
        "snn_bptt",
        "membrane never reset after a spike",
        "learners/spiking.py",
        (("mem = beta * mem + current - spk.detach() * neuron.threshold", "mem = beta * mem + current"),),
    ),
    Mutant(
        "snn_dfa",
        "presynaptic trace without leak",
        "learners/snn_dfa.py",
        (
            ("    gain = torch.cumsum(decay, 0)", "    gain = torch.cumsum(torch.ones_like(decay), 0)"),
            ("            eps = beta * eps + inputs[t]", "            eps = eps + inputs[t]"),
        ),
    ),
    Mutant(
        "snn_dfa",
        "learning signal not filtered by the readout",
        "learners/snn_dfa.py",
        (("        acc = kappa * acc + error[t]", "        acc = error[t]"),),
    ),
    Mutant(
        "snn_dfa",
        "surrogate derivative left out of the hidden learning signal",
        "learners/snn_dfa.py",
        (
            (
                "delta = (filtered @ self.feedback[name].T).reshape(psi.shape) * psi",
                "delta = (filtered @ self.feedback[name].T).reshape(psi.shape)",
            ),
        ),
    ),
)


def option_mutant(rule: str, what: str, path: str, old: str, new: str) -> Mutant:
    """An issue-31 variant: one edit, killed by the option audit."""
    return Mutant(rule, f"issue 31: {what}", path, ((old, new),), AUDIT)


BACKPROP = "learners/backprop.py"
SGD = "return torch.optim.SGD(tensors, lr=params.lr, momentum=params.momentum, weight_decay=params.weight_decay)"
ADAM = "return torch.optim.Adam(tensors, lr=params.lr, weight_decay=params.weight_decay, foreach=True)"


def optimizer_mutant(what: str, call: str, old: str, new: str) -> Mutant:
    """A variant of ``make_optimizer``'s ``call`` (SGD or ADAM) with ``old`` replaced by ``new``."""
    return option_mutant("optimizer", what, BACKPROP, call, call.replace(old, new))


OPTION_MUTANTS: tuple[Mutant, ...] = (
    optimizer_mutant("SGD momentum ignored", SGD, "momentum=params.momentum", "momentum=0.9"),
    optimizer_mutant("SGD weight decay ignored", SGD, "weight_decay=params.weight_decay", "weight_decay=0.0"),
    optimizer_mutant("SGD lr halved", SGD, "lr=params.lr", "lr=params.lr / 2"),
    optimizer_mutant("Adam weight decay ignored", ADAM, "weight_decay=params.weight_decay", "weight_decay=0.0"),
    optimizer_mutant(
        "Adam weight decay doubled", ADAM, "weight_decay=params.weight_decay", "weight_decay=2 * params.weight_decay"
    ),
    optimizer_mutant("Adam lr x10", ADAM, "lr=params.lr", "lr=10 * params.lr"),
    option_mutant(
        "optimizer", "optimizer choice ignored (always Adam)", BACKPROP, 'if params.optimizer == "sgd":', "if False:"
    ),
    option_mutant(
        "backprop", "loss option ignored (always cross-entropy)", BACKPROP, 'getattr(self.params, "loss", "ce")', '"ce"'
    ),
    option_mutant(
        "fa",
        "feedback_scale ignored",
        "learners/fa.py",
        "self.generator, self.params.feedback_scale)",
        "self.generator, 1.0)",
    ),
    option_mutant(
        "dfa",
        "feedback_scale squared",
        "learners/dfa.py",
        "self.generator, self.params.feedback_scale\n",
        "self.generator, self.params.feedback_scale**2\n",
    ),
    option_mutant(
        "fa",
        "feedback init bound scale/fan_in instead of scale/sqrt(fan_in)",
        "learners/feedback.py",
        "bound = scale / math.sqrt(math.prod(shape[1:]))",
        "bound = scale / math.prod(shape[1:])",
    ),
    option_mutant(
        "es",
        "weight decay with the wrong sign",
        "learners/es.py",
        "-fitness_gradient + self.params.weight_decay",
        "-fitness_gradient - self.params.weight_decay",
    ),
    option_mutant(
        "es",
        "weight decay halved",
        "learners/es.py",
        "-fitness_gradient + self.params.weight_decay",
        "-fitness_gradient + 0.5 * self.params.weight_decay",
    ),
    option_mutant(
        "es",
        "lr ignored",
        "learners/es.py",
        "torch.optim.Adam([self.mean], lr=params.lr)",
        "torch.optim.Adam([self.mean], lr=0.03)",
    ),
    option_mutant(
        "es", "no rank shaping (raw fitness)", "learners/es.py", "shaped = centered_ranks(fitness)", "shaped = fitness"
    ),
    option_mutant("ga", "crossover probability ignored", "learners/ga.py", "p.crossover, 1.0)", "0.0, 1.0)"),
    option_mutant("ga", "tournament size ignored", "learners/ga.py", "tournsize=params.tournament_size", "tournsize=3"),
    option_mutant(
        "ga",
        "truncation ignored (parents among all)",
        "learners/ga.py",
        "keep=params.truncation",
        "keep=params.population",
    ),
    option_mutant("cmaes", "sigma ignored", "learners/cmaes.py", "sigma=params.sigma, **extra", "sigma=0.1, **extra"),
    option_mutant(
        "cmaes",
        "population ignored",
        "learners/cmaes.py",
        'extra = {"lambda_": params.population} if params.population else {}',
        "extra = {}",
    ),
    option_mutant(
        "snn_bptt",
        "threshold left out of the reset",
        "learners/spiking.py",
        "- spk.detach() * neuron.threshold",
        "- spk.detach()",
    ),
    option_mutant(
        "snn_bptt",
        "surrogate slope ignored",
        "learners/spiking.py",
        "fn(**{slope_name: params.surrogate_slope})",
        "fn()",
    ),
    option_mutant(
        "snn_bptt", "learn_beta ignored", "learners/spiking.py", "learn_beta=params.learn_beta,", "learn_beta=False,"
    ),
    option_mutant("snn_bptt", "beta ignored", "learners/spiking.py", "beta=params.beta,", "beta=0.9,"),
    option_mutant(
        "pc",
        "inference rate doubled",
        "learners/pc.py",
        "v[k].sub_(grad_v, alpha=gamma)",
        "v[k].sub_(grad_v, alpha=2 * gamma)",
    ),
    option_mutant(
        "pc",
        "top_loss ignored in the output error",
        "learners/pc.py",
        'logits.softmax(dim=1) if self.params.top_loss == "ce" else logits',
        "logits.softmax(dim=1)",
    ),
    option_mutant("ff", "threshold ignored", "learners/ff.py", "params.threshold or float(w)", "float(w)"),
    option_mutant("ff", "norm_scale ignored", "learners/ff.py", "params.norm_scale or math.sqrt(w)", "math.sqrt(w)"),
    option_mutant(
        "dtp",
        "inverse_lr ignored (forward lr used)",
        "learners/dtp.py",
        "lr=params.inverse_lr, weight_decay=0.0",
        "lr=params.lr, weight_decay=0.0",
    ),
    option_mutant(
        "dtp", "freeze_propagated ignored", "learners/dtp.py", "if self.params.freeze_propagated:", "if False:"
    ),
    option_mutant(
        "fwd_grad",
        "tangents ignored (one tangent, divided by K)",
        "learners/fwd_grad.py",
        "for k in range(self.params.tangents):",
        "for k in range(1):",
    ),
)

MUTANTS = MUTANTS + OPTION_MUTANTS
