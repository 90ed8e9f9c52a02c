"""Stand-ins for the course helper modules a submission imports but does not contain.

The grader (:mod:`reference.grade`) puts this folder last on a student's ``sys.path`` (and supplies
``PACKAGE.layer_utils`` etc. for a package that lacks them), so a student's own copy always wins. Each module keeps
the course's names, signatures and arithmetic:

- deeplearning.ai (Improving Deep Neural Networks): ``reg_utils``, ``opt_utils``, ``testCases`` — ``sigmoid``,
  ``relu``, ``initialize_parameters``, ``compute_cost``, ``forward_propagation``, ``backward_propagation``,
  ``update_parameters``, ``predict``; the data loaders, which read the course's data files, raise a clear error;
- CS231n: ``im2col`` (the course's NumPy indices), ``fast_layers`` (``conv_forward_fast`` and friends in NumPy: the
  course's Cython ``im2col_cython`` is not needed), ``layer_utils`` (the sandwich layers built from the student's own
  ``layers`` module when there is one, else from the stand-in fast layers).
"""
