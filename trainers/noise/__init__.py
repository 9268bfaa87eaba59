"""The pieces of the gradient-noise measurement program (trainers.gradient_noise):

* run_config   -- a measured run's settings, from the config.json its trainer wrote;
* tasks        -- the trainers' own tasks (BERT, ResNet) built from those settings;
* objective    -- a task's training loss per minibatch, in the shape acclip_tf.noise measures;
* ablation     -- Figure 4's encoders and Gaussian input;
* groups       -- noise norms per parameter group (grouped by variable path);
* measurements -- the measurement paths, the measurement itself, tail verdicts, figures and JSON.
"""
